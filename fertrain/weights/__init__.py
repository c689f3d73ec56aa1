"""Pretrained weights: entries (``conf/weights/*.yaml``), strict loading, and ``python -m fertrain.weights``.

- :class:`WeightsSpec` (``spec.py``): one entry: where the weights come from, their key format, the input
  normalisation they expect, their citation.
- :func:`load_into` (``loader.py``): read any common checkpoint layout, map its keys onto a backbone, load with a
  coverage report; anything short of 100% (outside ``allow_missing``) raises :class:`WeightsError`.
- ``sources.py``: torchvision's weights enums through torchvision's cache; timm (optional).
- ``python -m fertrain.weights inspect FILE [--model mscm]`` / ``list`` (``__main__.py``).
"""

from fertrain.weights.loader import (
    LoadReport,
    dry_run,
    extract_state_dict,
    load_into,
    map_keys,
    plan_load,
    prefix_summary,
    read_checkpoint,
    sha256_of,
)
from fertrain.weights.spec import ARCHS, WeightsError, WeightsSpec, generic_spec, known_entries

__all__ = [
    "ARCHS",
    "LoadReport",
    "WeightsError",
    "WeightsSpec",
    "dry_run",
    "extract_state_dict",
    "generic_spec",
    "known_entries",
    "load_into",
    "map_keys",
    "plan_load",
    "prefix_summary",
    "read_checkpoint",
    "sha256_of",
]
