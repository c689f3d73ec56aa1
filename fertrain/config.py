"""Where the Hydra configs live, and the OmegaConf resolvers the configs use.

The configs are the top-level ``conf/`` folder of the repository; ``fertrain/conf`` is a symbolic link to it so
that the same path works from a source checkout, an editable install and a built wheel (where setuptools copies
the linked files into the package).

Resolvers (registered once, on import of this module):

- ``${fertrain.classes:<dotted.path.to.DatasetClass>}``: the dataset's ``class_names`` tuple, read from the
  dataset module itself, so the label map has a single source of truth (the dataset file).
- ``${fertrain.len:<list>}``: the length of a list, e.g. ``num_classes: ${fertrain.len:${.class_names}}``.
- ``${fertrain.asset:<relative path>}``: absolute path of a file shipped in ``fertrain/assets`` (the demo video).
- ``${fertrain.discover_classes:<dotted.path.to.DatasetClass>,<arg>,...}``: the class names a dataset reads from the
  data itself, ``DatasetClass.class_names_of(*args)`` (``data=folder``: the class folders; ``data=csv``: the
  labels), for datasets whose label map is the user's.
- ``${fertrain.job_dir:<job num>,<override dirname>}``: a multirun job's folder, ``<num, 3 digits>-<8 hex of the
  overrides>`` (short and stable; the overrides themselves are in the job's ``run.json``).
- ``${fertrain.eval_dir:<train>,<ckpt_path>,<override dirname>}``: ``""`` for a training run; for a test-only run
  (``train=false``) ``/eval/<checkpoint name>-<6 hex of the checkpoint's absolute path and the overrides>``, so it
  never writes into the training run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import ListConfig, OmegaConf


def config_dir() -> Path:
    """Absolute path of the folder that holds ``train.yaml``.

    Raises:
        FileNotFoundError: neither the packaged ``fertrain/conf`` nor the checkout's ``conf/`` has ``train.yaml``.
    """
    here = Path(__file__).resolve().parent
    candidates = (Path(__file__).parent / "conf", here / "conf", here.parent / "conf")
    for cand in candidates:
        if (cand / "train.yaml").is_file():
            return cand.resolve()
    raise FileNotFoundError(
        "fertrain configs not found: expected train.yaml in one of " + ", ".join(str(c) for c in candidates)
    )


def _class_names(target: str) -> ListConfig:
    # A ListConfig, not a list: OmegaConf.resolve (``--cfg job --resolve``) cannot put a plain list into the node.
    cls = get_class(target)
    names = getattr(cls, "class_names", None)
    if not names:
        raise ValueError(f"{target} has no non-empty `class_names` attribute (needed by ${{fertrain.classes:...}})")
    return ListConfig(list(names))


def _discover_classes(target: str, *args) -> ListConfig:
    names = get_class(target).class_names_of(*[OmegaConf.to_container(a) if isinstance(a, ListConfig) else a
                                                for a in args])
    return ListConfig(list(names))


def asset_path(relative: str) -> str:
    """Absolute path of a file shipped in ``fertrain/assets``.

    Raises:
        FileNotFoundError: no such packaged file.
    """
    path = Path(__file__).resolve().parent / "assets" / relative
    if not path.exists():
        raise FileNotFoundError(f"packaged asset {relative!r} not found at {path}")
    return str(path)


def job_dir(num: int, override_dirname: str) -> str:
    """Folder name of a multirun job: ``"007-1a2b3c4d"`` (index, then the first 8 hex of SHA-1 of the overrides)."""
    return f"{int(num):03d}-{hashlib.sha1(str(override_dirname).encode()).hexdigest()[:8]}"


def eval_dir(train: bool, ckpt_path: str | None, override_dirname: str = "") -> str:
    """Suffix of a test-only run's directory (see the module docstring); ``""`` when ``train`` is true."""
    if train:
        return ""
    if ckpt_path in (None, "", "null"):
        name, where = "init", ""
    else:
        name, where = Path(str(ckpt_path)).stem, str(ckpt_path) if ckpt_path == "last" else os.path.abspath(ckpt_path)
    return f"/eval/{name}-{hashlib.sha1(f'{where}|{override_dirname}'.encode()).hexdigest()[:6]}"


def fold_run_id(fold: Any, seed: Any) -> str:
    """``run_id`` of the fold experiments: ``fold<N>_seed<S>``, or ``seed<S>`` (train.yaml's default) when the data
    config has no ``fold`` (*ours*: ``+experiment=dfew_mscm data=folder`` runs the recipe on one's own data instead of
    failing on the run directory with Hydra's "Interpolation key 'data.fold' not found")."""
    return f"seed{seed}" if fold is None else f"fold{fold}_seed{seed}"


def register_resolvers() -> None:
    """Register fertrain's OmegaConf resolvers (idempotent)."""
    if not OmegaConf.has_resolver("fertrain.classes"):
        OmegaConf.register_new_resolver("fertrain.classes", _class_names)
    if not OmegaConf.has_resolver("fertrain.len"):
        OmegaConf.register_new_resolver("fertrain.len", lambda xs: len(xs))
    if not OmegaConf.has_resolver("fertrain.discover_classes"):
        OmegaConf.register_new_resolver("fertrain.discover_classes", _discover_classes)
    if not OmegaConf.has_resolver("fertrain.asset"):
        OmegaConf.register_new_resolver("fertrain.asset", asset_path)
    if not OmegaConf.has_resolver("fertrain.job_dir"):
        OmegaConf.register_new_resolver("fertrain.job_dir", job_dir)
    if not OmegaConf.has_resolver("fertrain.eval_dir"):
        OmegaConf.register_new_resolver("fertrain.eval_dir", eval_dir)
    if not OmegaConf.has_resolver("fertrain.fold_run_id"):
        OmegaConf.register_new_resolver("fertrain.fold_run_id", fold_run_id)


register_resolvers()
