"""Shim: runs ``python -m fertrain.bench.data`` (the code lives in fertrain/bench/data.py)."""
from fertrain.bench.data import main

raise SystemExit(main())
