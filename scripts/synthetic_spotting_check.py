"""Shim: runs ``python -m fertrain.bench.synthetic_spotting`` (the code lives in fertrain/bench/synthetic_spotting.py)."""
from fertrain.bench.synthetic_spotting import main

raise SystemExit(main())
