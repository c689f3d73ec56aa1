"""Shim: runs ``python -m fertrain.bench.check`` (the code lives in fertrain/bench/check.py)."""
from fertrain.bench.check import main

raise SystemExit(main())
