"""Shared fixtures: the ../shared folder beside the repo (optional), composed configs, miniature trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch  # noqa: F401  first: decord2 imported before torch loads NVBLAS and crashes torch CPU matmuls

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository; tests that need it skip with a reason when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED}/data not present (reference data beside the repo is only on developer/CI machines)")
    return SHARED


@pytest.fixture(scope="session")
def demo_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One face cache for the whole session: the demo video's aligned faces (``conf/data/demo.yaml``'s
    ``data.faces``), extracted once (~15 s on one core). Tests that build the demo pass
    ``data.cache_dir=<this folder>`` (and ``cache_dir=`` to predict) so they reuse them."""
    from hydra.utils import instantiate

    from tests.helpers import compose_config

    cache = tmp_path_factory.mktemp("demo_faces")
    cfg = compose_config([f"data.cache_dir={cache}"], tmp_path_factory.mktemp("demo_faces_cfg"))
    instantiate(cfg.data.datamodule.source)  # runs the face pipeline, writes faces-<key>.npz and the frame array
    return cache
