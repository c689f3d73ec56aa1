"""Shim: runs ``python -m fertrain.bench.train`` (the code lives in fertrain/bench/train.py)."""
from fertrain.bench.train import main

raise SystemExit(main())
