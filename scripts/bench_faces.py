"""Shim: runs ``python -m fertrain.bench.faces`` (the code lives in fertrain/bench/faces.py)."""
from fertrain.bench.faces import main

raise SystemExit(main())
