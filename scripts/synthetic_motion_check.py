"""Shim: runs ``python -m fertrain.bench.synthetic_motion`` (the code lives in fertrain/bench/synthetic_motion.py)."""
from fertrain.bench.synthetic_motion import main

raise SystemExit(main())
