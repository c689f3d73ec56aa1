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
