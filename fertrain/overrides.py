"""Type checks of command-line overrides, before anything is built: ``trainer.max_epochs=abc`` names the key and the
expected type instead of failing later inside Lightning with a ``TypeError`` that names neither.

What a key may hold comes from where it goes (*ours*):

- a key under a node with ``_target_`` is an argument of that callable: its annotation
  (``typing.get_type_hints`` of the constructor or function) is the expected type, e.g.
  ``trainer.max_epochs`` -> ``pytorch_lightning.Trainer(max_epochs: Optional[int])``;
- fertrain's own top-level keys have the types in :data:`TOP_LEVEL`.

Only overridden keys are checked (the shipped configs are tested), and only the annotations this module can read
(``int``, ``float``, ``bool``, ``str``, ``None``, ``Optional``/``Union``, ``Literal``, ``list``/``Sequence``,
``dict``/``Mapping``); anything else is accepted.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from fertrain.cli import UsageError

TOP_LEVEL: dict[str, Any] = {
    "seed": int, "train": bool, "test": bool, "ckpt_path": typing.Optional[str], "run_id": str,
    "experiment_name": str, "optimized_metric": typing.Optional[str], "predict_video": typing.Optional[str],
    "monitor.key": str, "monitor.name": str, "monitor.mode": typing.Literal["min", "max"],
    "checkpoint.every_n_train_steps": typing.Optional[int], "checkpoint.best_weights_only": bool,
}


def _key(override: str) -> tuple[str, str] | None:
    """``"++a.b=3"`` -> ``("a.b", "3")``; deletions and group selections without ``.`` are handled by the caller."""
    text = override.lstrip("+")
    if text.startswith("~") or "=" not in text:
        return None
    key, _, value = text.partition("=")
    return key.split("@")[0], value


def _callable_hints(target: str) -> tuple[Any, dict[str, Any]] | None:
    """``(callable, {argument: annotation})``; for a class, the ``__init__`` annotations of every class in its MRO
    (a subclass that forwards ``**kwargs``, e.g. :class:`fertrain.acceleration.Trainer`, keeps its base's)."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:  # noqa: BLE001 - an unimportable target fails later with its own message
        return None
    fns = ([c.__dict__["__init__"] for c in reversed(obj.__mro__) if "__init__" in c.__dict__ and c is not object]
           if inspect.isclass(obj) else [obj])
    hints: dict[str, Any] = {}
    for fn in fns:
        hints.update(_hints(fn))
    return obj, hints


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: accept anything
        try:
            return {k: p.annotation for k, p in inspect.signature(fn).parameters.items()
                    if p.annotation is not inspect.Parameter.empty and not isinstance(p.annotation, str)}
        except (TypeError, ValueError):
            return {}


def _fits(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits ``hint``; None when the hint is not one this module reads (accepted)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        results = [_fits(value, h) for h in typing.get_args(hint)]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path or hint is typing.Optional[Path]:
        return isinstance(value, str)
    base = origin or hint
    if base in (list, tuple, cabc.Sequence, Sequence):
        return isinstance(value, (list, tuple, ListConfig))
    if base in (dict, cabc.Mapping, Mapping):
        return isinstance(value, (dict, DictConfig))
    return None


def describe(hint: Any) -> str:
    """A readable name of a type hint (``Optional[int]`` -> ``"int or null"``)."""
    if hint is None or hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        return " or ".join(describe(h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_overrides(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Check each ``key=value`` override against the type its key expects (module docstring).

    Raises:
        UsageError: ``<key>=<value>: expected <type> (<where the type comes from>), got <type> <value>``.
    """
    for override in overrides:
        parsed = _key(override)
        if parsed is None:
            continue
        key, raw = parsed
        parent_key, _, leaf = key.rpartition(".")
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
        except Exception:  # noqa: BLE001 - an unresolvable value fails later with its own message
            continue
        if isinstance(value, (DictConfig,)) or (not parent_key and key not in TOP_LEVEL):
            continue  # a config group selection (data=dfew) or an unknown top-level key
        if isinstance(value, ListConfig):
            value = list(value)
        hint, where = None, ""
        if key in TOP_LEVEL:
            hint, where = TOP_LEVEL[key], "fertrain's config"
        else:
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            if isinstance(parent, DictConfig) and "_target_" in parent and leaf not in ("_target_", "_partial_"):
                found = _callable_hints(str(parent._target_))
                if found is not None and leaf in found[1]:
                    hint, where = found[1][leaf], f"argument {leaf} of {parent._target_}"
        if hint is None:
            continue
        if _fits(value, hint) is False:
            raise UsageError(f"{key}={raw}: expected {describe(hint)} ({where}), got {type(value).__name__} "
                             f"{value!r}")
