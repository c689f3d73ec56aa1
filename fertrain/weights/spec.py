"""A weights entry: which checkpoint a backbone starts from, where it comes from, and what input it expects.

The entries live in ``conf/weights/<name>.yaml`` (one Hydra config group option each, selected with
``weights=<name>``); :class:`WeightsSpec` is their typed form, built by :meth:`WeightsSpec.from_config` from the
``weights`` node of a composed config (or any mapping with the same keys). ``known_entries()`` reads every entry
file, e.g. for ``python -m fertrain.weights list``.

Fields (``conf/weights/README`` in ``docs/weights.md`` has the table):

- ``name``: the entry's name (``none`` = random initialisation).
- ``source``: ``none`` | ``file`` (a local file) | ``torchvision`` (a ``torchvision`` weights enum, read from
  torchvision's own cache, downloaded through torchvision when absent and ``download`` is true) | ``timm`` (a
  ``timm`` pretrained model; timm is optional and imported only here).
- ``arch``: the backbone the file holds: ``resnet18`` (2-D ResNet-18 in torchvision's key layout: ``conv1``,
  ``bn1``, ``layer1`` .. ``layer4``), ``r3d_18`` or ``r2plus1d_18`` (torchvision video ResNets). A model whose
  backbone is another architecture refuses the entry.
- ``path``: the local file (``source: file``); ``file_name``: the name the publisher distributes it under;
  ``url``: the publisher's page, for the user's own download (fertrain never downloads a ``file`` entry).
- ``sha256``: full hex digest of the file, checked before loading when set (``null`` where no public source
  gives one; the report then records the digest it computed).
- ``torchvision``: the enum, e.g. ``ResNet18_Weights.IMAGENET1K_V1``; ``timm``: the model name, e.g.
  ``resnet18.a1_in1k``; ``download``: allow torchvision/timm to download into their cache; ``check_hash``:
  check the hash prefix torchvision puts in its file names (``torch.hub`` semantics).
- ``key_format``: how the file stores its tensors (documentation; the loader detects the format itself).
- Key mapping: ``prefix`` (the prefix to strip, e.g. ``module.``; ``null`` = detect the prefix that matches
  most of the backbone), ``rename`` (``[old_prefix:new_prefix, ...]`` applied after the strip), ``ignore`` (file keys
  expected to have no place in the backbone, e.g. a classifier ``fc.``; any other unused key under the prefix is
  an error), ``allow_missing`` (backbone tensors allowed to stay random; without them coverage must be 100%).
  Patterns: a name ending in ``.`` is a prefix, anything else an ``fnmatch`` pattern (``layer4.*``) or exact name.
- Normalisation: ``mean``/``std`` per RGB channel of 0..1 pixel values (``x = (v / 255 - mean) / std``, the
  datamodule's ``normalize_video``) and ``input_range`` (the range of the network's input; ``[0, 1]`` means mean
  0, std 1). ``applied_mean``/``applied_std``: what the datamodule really uses (the config interpolates
  ``data.datamodule.mean/std``), compared with the declared values when the weights load.
- ``weights_only``: read the file with ``torch.load(weights_only=True)`` (tensors and plain containers only;
  set false only for a file you trust: full unpickling can run code).
- ``citation``, ``notes``: where the weights come from.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fertrain.cli import UsageError

SOURCES = ("none", "file", "torchvision", "timm")
ARCHS = {
    "resnet18": "2-D ResNet-18, torchvision key layout (conv1, bn1, layer1..layer4)",
    "r3d_18": "torchvision.models.video.r3d_18 (stem, layer1..layer4)",
    "r2plus1d_18": "torchvision.models.video.r2plus1d_18 (stem, layer1..layer4)",
}


class WeightsError(UsageError):
    """Pretrained weights cannot be used as configured (exit status 2). The message names the file or entry, what
    was found, and the setting that would fix it."""


def _floats(value: Any, key: str, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise WeightsError(f"weights entry {name!r}: {key} must be a list of numbers, got {value!r}") from None
    return out


def _strings(value: Any, key: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) and not hasattr(value, "__iter__"):
        raise WeightsError(f"weights entry {name!r}: {key} must be a list of key patterns, got {value!r}")
    return tuple(str(v) for v in value)


def parse_rename(value: Any, name: str = "?") -> tuple[tuple[str, str], ...]:
    """``rename`` as ``((old, new), ...)`` from a list of ``"old:new"`` strings (the command-line form,
    ``weights.rename=[stage1.:layer1.,stem_conv.:conv1.]``), a list of ``[old, new]`` pairs, or a mapping.

    Raises:
        WeightsError: another form (message shows the expected one).
    """
    if not value:
        return ()
    if isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    out = []
    for item in value:
        if isinstance(item, str) and item.count(":") == 1:
            old, new = item.split(":")
        elif not isinstance(item, str) and len(item) == 2:
            old, new = item
        else:
            raise WeightsError(f"weights entry {name!r}: rename takes 'old_prefix:new_prefix' items, e.g. "
                               f"weights.rename=[stage1.:layer1.,stem_conv.:conv1.]; got {item!r}")
        out.append((str(old), str(new)))
    return tuple(out)


def matches(key: str, patterns: Sequence[str]) -> bool:
    """Whether ``key`` matches one of ``patterns``: ``"fc."`` is a prefix, ``"layer4.*"`` an fnmatch pattern,
    anything else an exact name."""
    for p in patterns:
        if p.endswith(".") and key.startswith(p):
            return True
        if key == p or (any(c in p for c in "*?[") and fnmatch.fnmatchcase(key, p)):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    """One weights entry (see the module docstring for every field).

    Raises (from :meth:`from_config`):
        WeightsError: unknown key, unknown ``source``/``arch``, a mean/std that is not 3 numbers with std > 0, an
            ``input_range`` of [0, 1] with a mean/std other than 0/1, a torchvision entry without its enum name.
    """

    name: str = "none"
    source: str = "none"
    arch: str | None = None
    path: str | None = None
    file_name: str | None = None
    url: str | None = None
    sha256: str | None = None
    torchvision: str | None = None
    timm: str | None = None
    download: bool = True
    check_hash: bool = True
    key_format: str | None = None
    prefix: str | None = None
    rename: tuple[tuple[str, str], ...] = ()
    ignore: tuple[str, ...] = ()
    allow_missing: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_range: tuple[float, ...] | None = None
    applied_mean: tuple[float, ...] | None = None
    applied_std: tuple[float, ...] | None = None
    weights_only: bool = True
    citation: str | None = None
    notes: str | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> WeightsSpec:
        """Build from the ``weights`` node of a config (a DictConfig or dict); None -> the ``none`` entry."""
        if cfg is None:
            return cls()
        if isinstance(cfg, WeightsSpec):
            return cfg
        try:  # a DictConfig: resolve interpolations (data.datamodule.mean) into plain values
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            pass
        data = dict(cfg)
        name = str(data.get("name", "none"))
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise WeightsError(f"weights entry {name!r}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
        source = str(data.get("source", "none"))
        if source not in SOURCES:
            raise WeightsError(f"weights entry {name!r}: source must be one of {list(SOURCES)}, got {source!r}")
        arch = data.get("arch")
        if source != "none" and arch not in ARCHS:
            raise WeightsError(f"weights entry {name!r}: arch must be one of {list(ARCHS)} (the backbone the "
                               f"weights are for), got {arch!r}")
        if source == "torchvision" and not data.get("torchvision"):
            raise WeightsError(f"weights entry {name!r}: source torchvision needs `torchvision: <Enum>.<NAME>`, "
                               "e.g. ResNet18_Weights.IMAGENET1K_V1")
        if source == "timm" and not data.get("timm"):
            raise WeightsError(f"weights entry {name!r}: source timm needs `timm: <model name>`, e.g. resnet18.a1_in1k")
        spec = dict(data)
        spec.update(
            name=name, source=source, arch=arch,
            rename=parse_rename(data.get("rename"), name),
            ignore=_strings(data.get("ignore"), "ignore", name),
            allow_missing=_strings(data.get("allow_missing"), "allow_missing", name),
        )
        for key in ("mean", "std", "input_range", "applied_mean", "applied_std"):
            spec[key] = _floats(data.get(key), key, name)
        for key in ("path", "file_name", "url", "sha256", "torchvision", "timm", "key_format", "prefix", "citation",
                    "notes"):
            spec[key] = None if data.get(key) is None else str(data[key])
        if spec["sha256"] is not None:
            spec["sha256"] = spec["sha256"].lower()
        out = cls(**spec)
        out.validate_normalization()
        return out

    def validate_normalization(self) -> None:
        """Check mean/std/input_range (see the class docstring)."""
        for key in ("mean", "std", "applied_mean", "applied_std"):
            value = getattr(self, key)
            if value is not None and len(value) != 3:
                raise WeightsError(f"weights entry {self.name!r}: {key} needs 3 values (R, G, B), got {list(value)}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise WeightsError(f"weights entry {self.name!r}: std must be > 0, got {list(self.std)}")
        if self.input_range is not None and tuple(self.input_range) == (0.0, 1.0) and self.mean is not None:
            if any(m != 0 for m in self.mean) or any(s != 1 for s in (self.std or ())):
                raise WeightsError(f"weights entry {self.name!r}: input_range [0, 1] means mean 0 and std 1 (the "
                                   f"network sees v / 255), but mean={list(self.mean)} std={list(self.std or [])}")

    @property
    def enabled(self) -> bool:
        """Whether this entry loads anything (``source != "none"``)."""
        return self.source != "none"

    def normalization_mismatch(self) -> str | None:
        """A message naming both normalisations when the applied mean/std differ from the declared ones, else None."""
        if self.mean is None or self.std is None or self.applied_mean is None or self.applied_std is None:
            return None
        close = all(abs(a - b) <= 1e-6 for a, b in zip(self.mean + self.std, self.applied_mean + self.applied_std))
        if close:
            return None
        return (f"input normalisation differs from the one the weights {self.name!r} were trained with: the weights "
                f"declare mean={list(self.mean)} std={list(self.std)} (input range "
                f"{list(self.input_range) if self.input_range else 'not stated'}), the datamodule applies "
                f"mean={list(self.applied_mean)} std={list(self.applied_std)} (data.datamodule.mean/std overridden)")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples, ``rename`` as a dict), e.g. for run records."""
        out = dataclasses.asdict(self)
        out["rename"] = dict(self.rename)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def generic_spec(path: str | Path, **overrides: Any) -> WeightsSpec:
    """The ``state_dict`` entry for a local file of ResNet-18 weights with no declared normalisation (the Python
    API's ``pretrained_path=``); ``overrides`` replace fields."""
    base = {"name": "state_dict", "source": "file", "arch": "resnet18", "path": str(path), "ignore": ("fc.",)}
    base.update(overrides)
    return dataclasses.replace(WeightsSpec(), **base)


def entries_dir() -> Path:
    """``conf/weights`` of this installation."""
    from fertrain.config import config_dir

    return config_dir() / "weights"


def known_entries() -> dict[str, dict[str, Any]]:
    """Every entry of ``conf/weights/*.yaml`` as its raw ``weights`` mapping (interpolations unresolved), by name."""
    from omegaconf import OmegaConf

    out: dict[str, dict[str, Any]] = {}
    for path in sorted(entries_dir().glob("*.yaml")):
        node = OmegaConf.load(path)
        out[path.stem] = OmegaConf.to_container(node.weights, resolve=False)
    return out
