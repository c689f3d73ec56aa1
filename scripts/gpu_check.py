"""Shim: runs ``python -m fertrain.bench.gpu_check`` (the code lives in fertrain/bench/gpu_check.py)."""
from fertrain.bench.gpu_check import main

raise SystemExit(main())
