"""Shim: runs ``python -m fertrain.bench.model_card`` (the code lives in fertrain/bench/model_card.py)."""
from fertrain.bench.model_card import main

raise SystemExit(main())
