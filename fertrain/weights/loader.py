"""Read a checkpoint in any common layout, map its keys onto a backbone, and load it strictly.

Formats understood (:func:`extract_state_dict`):

- a plain ``state_dict`` (``torch.save(model.state_dict())``; torchvision's and timm's files);
- ``{'state_dict': {...}, ...}`` (Emotion-FAN/CEFLNet ``.pth.tar``: ``{'epoch', 'state_dict', 'prec1'}``; source:
  Open-Debin/Emotion-FAN ``basic_code/load.py`` ``model_parameters`` and CVLab-Liuyuanyuan/CEFLNet
  ``data/load_materials.py`` ``LoadParameter``, which read ``checkpoint['state_dict']``);
- Lightning checkpoints (``{'state_dict', 'pytorch-lightning_version', ...}``; keys prefixed by the
  LightningModule attribute: ``model.``, ``net.``, fertrain's ``net.backbone.``);
- ``{'model': {...}}``, ``{'model_state_dict': {...}}``, ``{'net': {...}}`` wrappers;
- a pickled ``nn.Module`` (only with ``weights_only=False``).

Keys: DataParallel/DistributedDataParallel's ``module.`` and any other prefix are found by
:func:`map_keys`: every prefix of the file's keys that ends at a ``.`` is tried, and the one under which most keys
(after ``rename``) are tensors of the backbone wins (ties: the shortest). ``prefix`` fixes it instead.

Strictness (:func:`load_into`): the report counts loaded / total tensors of the target backbone (parameters and
running statistics; BatchNorm's ``num_batches_tracked`` counters are loaded when present but not counted). Below
100% is an error unless every missing tensor matches ``allow_missing``; a file key under the prefix that has no
place in the backbone is an error unless it matches ``ignore`` (a classifier head), because a deeper network
(ResNet-34 into ResNet-18) would otherwise load at 100% with its extra blocks silently dropped; a shape mismatch
is an error. Each error names the file, the key prefixes found in it, and the setting that would fix it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fertrain.weights.spec import ARCHS, WeightsError, WeightsSpec, matches

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
COUNTER_SUFFIX = "num_batches_tracked"
_MAX_LISTED = 5


# ------------------------------------------------------------------------------------------------------ reading
def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path, weights_only: bool = True) -> Any:
    """``torch.load`` a local file onto the CPU.

    Raises:
        WeightsError: no such file; or the file holds objects other than tensors and plain containers while
            ``weights_only`` is true (message says how to allow it for a trusted file); or it is not a torch file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # noqa: BLE001 - every failure becomes one message naming the file
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if weights_only and ("weights_only" in str(err) or "Unsupported global" in str(err)):
            raise WeightsError(
                f"{path}: torch.load(weights_only=True) refused it ({text}): the file holds pickled Python objects "
                "besides tensors. If you trust the file, set weights.weights_only=false (full unpickling can run "
                "code), or re-save only its state_dict") from None
        raise WeightsError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {text})") from None


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(obj: Any, where: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a loaded checkpoint and a description of its format.

    Args:
        obj: what ``torch.load`` returned.
        where: the file name, for messages.

    Returns:
        ``(state_dict, format)``: ``format`` e.g. ``"plain state_dict"``, ``"Lightning checkpoint (state_dict)"``,
        ``"{'state_dict': ...} checkpoint (other keys: epoch, prec1)"``.

    Raises:
        WeightsError: no dict of tensors found (message lists the top-level keys or the type).
    """
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict()), f"pickled {type(obj).__name__} module"
    if _tensor_dict(obj):
        return dict(obj), "plain state_dict"
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if _tensor_dict(inner):
                others = [str(k) for k in obj if k != key]
                if "pytorch-lightning_version" in obj or "lightning_version" in obj:
                    fmt = f"Lightning checkpoint ({key})"
                else:
                    fmt = f"{{{key!r}: ...}} checkpoint" + (f" (other keys: {', '.join(others[:6])})" if others else "")
                return dict(inner), fmt
            if isinstance(inner, Mapping) and inner:
                bad = [k for k, v in inner.items() if not isinstance(v, torch.Tensor)]
                raise WeightsError(f"{where}: {key!r} holds {len(bad)} non-tensor entries (first: "
                                   f"{bad[:_MAX_LISTED]}); expected a state_dict of tensors")
        raise WeightsError(f"{where}: no state_dict found: top-level keys {list(obj)[:12]}; expected a dict of "
                           f"tensors, or one under one of {list(WRAPPER_KEYS)}")
    raise WeightsError(f"{where}: expected a state_dict (dict of str -> tensor) or a checkpoint dict, found "
                       f"{type(obj).__name__}")


# ------------------------------------------------------------------------------------------------- describing
def prefix_summary(keys: Sequence[str], limit: int = 8) -> str:
    """Top-level key prefixes with counts and the names below them, e.g.
    ``"module. (102 keys: conv1, bn1, layer1, layer2, layer3, layer4, fc)"``."""
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for key in keys:
        head, _, rest = key.partition(".")
        groups.setdefault(head, []).append(rest)
    parts = []
    for head, rests in list(groups.items())[:limit]:
        below = list(OrderedDict.fromkeys(r.split(".")[0] for r in rests if r))
        more = ", ..." if len(below) > limit else ""
        inner = f": {', '.join(below[:limit])}{more}" if below and len(rests) > 1 else ""
        parts.append(f"'{head}.' ({len(rests)} key{'s' if len(rests) != 1 else ''}{inner})")
    more = f" and {len(groups) - limit} more" if len(groups) > limit else ""
    return ", ".join(parts) + more


def _group_patterns(keys: Sequence[str]) -> list[str]:
    """Short ``allow_missing`` patterns covering ``keys`` (their first component, or first two for ``layerN``)."""
    out: list[str] = []
    for key in keys:
        parts = key.split(".")
        pat = parts[0] + "." if len(parts) > 1 else key
        if pat not in out:
            out.append(pat)
    return out


def guess_arch(keys: Sequence[str]) -> str | None:
    """A guess of the architecture from key names (for messages only)."""
    ks = set(keys)
    if any(k.endswith("stem.0.weight") for k in ks):
        return "a torchvision video ResNet (r3d_18 / r2plus1d_18 / mc3_18)"
    if any(k.endswith("layer1.2.conv1.weight") for k in ks):
        return "a ResNet deeper than 18 layers (layer1 has a third block)"
    if any(k.endswith("layer1.0.conv3.weight") for k in ks):
        return "a bottleneck ResNet (ResNet-50 or deeper)"
    return None


# ------------------------------------------------------------------------------------------------------ mapping
def _rename(key: str, rename: Sequence[tuple[str, str]]) -> str:
    for old, new in sorted(rename, key=lambda p: -len(p[0])):  # the longest old prefix first
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _candidate_prefixes(keys: Sequence[str]) -> list[str]:
    out = {""}
    for key in keys:
        for m in re.finditer(r"\.", key):
            out.add(key[: m.end()])
    return sorted(out, key=len)


@dataclass
class KeyMapping:
    """How the file's keys map onto the backbone: ``pairs`` backbone key -> file key, and what is left over."""

    prefix: str
    pairs: dict[str, str]
    under_prefix_unused: list[str]  # file keys under the prefix with no place in the backbone (after rename)
    outside_prefix: int  # file keys not under the prefix

    def rule(self, rename: Sequence[tuple[str, str]]) -> str:
        parts = [f"strip prefix {self.prefix!r}" if self.prefix else "keys as they are (no prefix)"]
        if rename:
            parts.append("rename " + ", ".join(f"{o!r}->{n!r}" for o, n in rename))
        return "; ".join(parts)


def map_keys(file_shapes: Mapping[str, Sequence[int]], target_shapes: Mapping[str, Sequence[int]],
             prefix: str | None = None, rename: Sequence[tuple[str, str]] = ()) -> KeyMapping:
    """Map file keys onto target keys by stripping a prefix and applying ``rename``.

    Args:
        file_shapes: key -> shape of the checkpoint's tensors.
        target_shapes: key -> shape of the backbone's tensors.
        prefix: prefix to strip; None = the prefix (ending at a ``.``, or none) under which most keys land on a
            target key of the same shape (ties: the shortest).
        rename: ``(old_prefix, new_prefix)`` pairs applied to the stripped key (longest ``old`` first).

    Returns:
        The :class:`KeyMapping` (pairs regardless of shape; shapes are checked by :func:`plan_load`).
    """
    if prefix is None:
        scores: Counter[str] = Counter()
        for key, shape in file_shapes.items():
            for cand in ("", *[key[: m.end()] for m in re.finditer(r"\.", key)]):
                new = _rename(key[len(cand):], rename)
                if new in target_shapes and tuple(target_shapes[new]) == tuple(shape):
                    scores[cand] += 1
        prefix = max(scores.items(), key=lambda kv: (kv[1], -len(kv[0])))[0] if scores else ""
    pairs: dict[str, str] = {}
    unused: list[str] = []
    outside = 0
    for key in file_shapes:
        if not key.startswith(prefix):
            outside += 1
            continue
        new = _rename(key[len(prefix):], rename)
        if new in target_shapes and new not in pairs:
            pairs[new] = key
        else:
            unused.append(key[len(prefix):])
    return KeyMapping(prefix, pairs, unused, outside)


def rename_hint(file_items: Sequence[tuple[str, tuple[int, ...]]],
                target_items: Sequence[tuple[str, tuple[int, ...]]]) -> list[tuple[str, str]] | None:
    """A ``rename`` map when the file's tensors equal the backbone's in number, order and shapes but not in names.

    Each pair is the part of the two names before their longest common ``.``-suffix (``stage1.0.conv1.weight`` vs
    ``layer1.0.conv1.weight`` -> ``('stage1.', 'layer1.')``); None when the lists differ in length or shapes.
    """
    if not file_items or len(file_items) != len(target_items):
        return None
    if any(sa != sb for (_, sa), (_, sb) in zip(file_items, target_items)):
        return None
    pairs: list[tuple[str, str]] = []
    for (a, _), (b, _) in zip(file_items, target_items):
        pa, pb = a.split("."), b.split(".")
        n = 0
        while n < min(len(pa), len(pb)) - 1 and pa[-1 - n] == pb[-1 - n]:
            n += 1
        old, new = ".".join(pa[: len(pa) - n]) + ".", ".".join(pb[: len(pb) - n]) + "."
        if n and old != new and (old, new) not in pairs:
            pairs.append((old, new))
    return pairs or None


def _rename_text(pairs: list[tuple[str, str]]) -> str:
    shown = ",".join(f"{a}:{b}" for a, b in pairs[:8])
    return f"weights.rename=[{shown}{',...' if len(pairs) > 8 else ''}]"


def prefix_rename_hint(file_shapes: Mapping[str, Sequence[int]], target_shapes: Mapping[str, Sequence[int]],
                       ignore: Sequence[str]) -> tuple[str, list[tuple[str, str]]] | None:
    """A ``(prefix, rename pairs)`` under which the file's tensors (without ``ignore`` and counters) equal the
    backbone's in number, order and shapes; None if no prefix gives that."""
    targets = [(k, tuple(v)) for k, v in target_shapes.items() if not k.endswith(COUNTER_SUFFIX)]
    cands = sorted({k[: m.end()] for k in file_shapes for m in re.finditer(r"\.", k)} | {""}, key=len)
    for p in cands:
        items = [(k[len(p):], tuple(v)) for k, v in file_shapes.items() if k.startswith(p)
                 and not k.endswith(COUNTER_SUFFIX) and not matches(k[len(p):], ignore)]
        if len(items) == len(targets):
            pairs = rename_hint(items, targets)
            if pairs:
                return p, pairs
    return None


# ------------------------------------------------------------------------------------------------------- report
@dataclass
class LoadReport:
    """What a load did (or, for a dry run, would do)."""

    entry: str
    target: str  # e.g. "MSCM.backbone (resnet18)"
    file: str | None
    format: str
    rule: str
    loaded: int
    total: int
    missing: list[str] = field(default_factory=list)  # target tensors the file does not provide
    allowed_missing: list[str] = field(default_factory=list)  # of those, allowed by allow_missing
    ignored: list[str] = field(default_factory=list)  # file keys under the prefix matched by ignore
    unused: list[str] = field(default_factory=list)  # file keys under the prefix, not ignored, no place
    outside_prefix: int = 0
    shape_mismatches: list[str] = field(default_factory=list)
    sha256: str | None = None
    sha256_expected: str | None = None
    normalization: dict[str, Any] | None = None
    file_keys: int = 0
    prefixes: str = ""
    error: str | None = None

    @property
    def coverage(self) -> float:
        """Loaded / total tensors of the target (1.0 = every tensor)."""
        return self.loaded / self.total if self.total else 0.0

    def summary(self) -> str:
        """One line: loaded/total, the file, the rule, what was ignored."""
        ign = f"; ignored {len(self.ignored)} file keys ({', '.join(self.ignored[:4])})" if self.ignored else ""
        allowed = f"; {len(self.allowed_missing)} allowed to stay random" if self.allowed_missing else ""
        return (f"weights {self.entry!r}: loaded {self.loaded}/{self.total} tensors of {self.target} from "
                f"{self.file} [{self.format}; {self.rule}]{ign}{allowed}")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for a run record); long key lists are cut to their first 20 entries."""
        out = dict(self.__dict__)
        for key in ("missing", "allowed_missing", "ignored", "unused", "shape_mismatches"):
            out[key] = list(out[key])[:20]
        out["coverage"] = self.coverage
        return out


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def target_keys(module: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone tensors that count for coverage: its state_dict without BatchNorm ``num_batches_tracked``."""
    return {k: v for k, v in module.state_dict().items() if not k.endswith(COUNTER_SUFFIX)}


def plan_load(state: Mapping[str, torch.Tensor], module: nn.Module, spec: WeightsSpec, *, target: str, file: str,
              fmt: str) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Map ``state`` onto ``module`` and check it; nothing is loaded.

    Returns:
        ``(report, to_load)``: ``report.error`` is the message of the first problem (None if the load is fine);
        ``to_load`` the tensors to pass to ``load_state_dict`` (backbone keys).
    """
    full = module.state_dict()
    counted = target_keys(module)
    mapping = map_keys(_shapes(state), _shapes(full), spec.prefix, spec.rename)
    ignored = [k for k in mapping.under_prefix_unused if matches(k, spec.ignore)]
    unused = [k for k in mapping.under_prefix_unused if k not in set(ignored)]
    mismatches = [f"{t} (file {mapping.prefix}{t}: {tuple(state[s].shape)}, backbone: {tuple(full[t].shape)})"
                  for t, s in mapping.pairs.items() if tuple(state[s].shape) != tuple(full[t].shape)]
    fits = {t: s for t, s in mapping.pairs.items() if tuple(state[s].shape) == tuple(full[t].shape)}
    loaded_keys = [t for t in fits if t in counted]
    missing = [k for k in counted if k not in set(loaded_keys)]
    allowed = [k for k in missing if matches(k, spec.allow_missing)]
    report = LoadReport(
        entry=spec.name, target=target, file=file, format=fmt, rule=mapping.rule(spec.rename), loaded=len(loaded_keys),
        total=len(counted), missing=missing, allowed_missing=allowed, ignored=ignored, unused=unused,
        outside_prefix=mapping.outside_prefix, shape_mismatches=mismatches, file_keys=len(state),
        prefixes=prefix_summary(list(state)))
    to_load = {t: state[s] for t, s in fits.items()}
    report.error = _problem(report, state, full, spec, mapping)
    return report, to_load


def _problem(r: LoadReport, state: Mapping[str, torch.Tensor], full: Mapping[str, torch.Tensor], spec: WeightsSpec,
             mapping: KeyMapping) -> str | None:
    """The error message for a planned load, or None. Names the file, the prefixes found and the fix."""
    if not r.shape_mismatches and r.loaded and not r.unused and set(r.missing) <= set(r.allowed_missing):
        return None  # a complete load (the hints below are computed only for errors)
    head = f"{r.file}: "
    found = f"Key prefixes found in the file ({r.file_keys} keys): {r.prefixes}."
    arch = guess_arch(list(state))
    arch_hint = f" Its keys look like {arch}, not {r.target}." if arch else ""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    r_targets = {k: tuple(v.shape) for k, v in full.items() if not k.endswith(COUNTER_SUFFIX)}
    unused_items = [(k, shapes[mapping.prefix + k]) for k in r.unused if not k.endswith(COUNTER_SUFFIX)]
    missing_items = [(k, tuple(full[k].shape)) for k in r.missing if k not in set(r.allowed_missing)]
    pairs = rename_hint(unused_items, missing_items)
    whole = None if pairs else prefix_rename_hint(_shapes(state), _shapes(full), spec.ignore)
    whole_text = (f"the file's tensors under {whole[0]!r} have the backbone's shapes in its order under other names: "
                  f"weights.prefix={whole[0]!r} {_rename_text(whole[1])}") if whole else None
    if r.shape_mismatches:
        return (f"{head}{len(r.shape_mismatches)} tensors have another shape than in {r.target} (first: "
                f"{'; '.join(r.shape_mismatches[:3])}): the file holds another architecture or a modified stem "
                f"(e.g. grey-scale input), or the prefix/names map the wrong tensors.{arch_hint} {found}"
                + (f" Fix: {whole_text}." if whole_text else ""))
    if r.loaded == 0:
        hint = None
        if pairs:
            hint = (f"the file's tensors have the backbone's shapes in the backbone's order under other names: "
                    f"map them with {_rename_text(pairs)}")
        elif whole_text:
            hint = whole_text
        fixes = [hint] if hint else []
        if spec.prefix is not None:
            auto = map_keys(_shapes(state), _shapes(full), None, spec.rename)
            fit = sum(1 for t, k in auto.pairs.items() if t in r_targets and tuple(state[k].shape) == r_targets[t])
            if fit >= r.total / 2:  # a detected prefix that really fits most of the backbone
                fixes.insert(0, f"weights.prefix={spec.prefix!r} matches nothing, while {auto.prefix!r} fits {fit} of "
                                f"{r.total} tensors: set weights.prefix={auto.prefix!r} (or null to detect it)")
        if not fixes:
            fixes.append("if the backbone's tensors are stored under other names, map them with "
                         "weights.rename=[<file prefix>.:<backbone prefix>.] (backbone keys: "
                         f"{', '.join(list(full)[:3])}, ...); weights.prefix=<prefix> strips a wrapper prefix")
        return (f"{head}no key matches {r.target} (0 of {r.total} tensors) with rule [{r.rule}]. {found}{arch_hint} "
                f"Fix: {'; '.join(fixes)}.")
    bad_missing = [k for k in r.missing if k not in set(r.allowed_missing)]
    if bad_missing:
        pats = _group_patterns(bad_missing)
        if pairs:
            rename = (f"the file has {len(unused_items)} unused tensors with exactly their shapes, in order: map "
                      f"them with {_rename_text(pairs)}")
        elif whole_text:
            rename = whole_text
        else:
            rename = ("if they are in the file under other names, map them with "
                      "weights.rename=[<file prefix>.:<backbone prefix>.]")
        return (f"{head}loaded only {r.loaded} of {r.total} tensors of {r.target} with rule [{r.rule}] "
                f"({r.coverage:.0%}); {len(bad_missing)} would stay random (first: "
                f"{', '.join(bad_missing[:_MAX_LISTED])}). {found}{arch_hint} Fix: {rename}; if they may stay "
                f"random, list them: weights.allow_missing=[{','.join(pats[:6])}].")
    if r.unused:
        pats = _group_patterns(r.unused)
        return (f"{head}{len(r.unused)} file keys under prefix {mapping.prefix!r} have no place in {r.target} "
                f"(first: {', '.join(r.unused[:_MAX_LISTED])}): the file may hold a deeper or different network "
                f"whose extra layers would be dropped silently.{arch_hint} {found} Fix: if they belong to a head or "
                f"another module you do not want, list them: weights.ignore=[{','.join(pats[:6])}].")
    return None


# ---------------------------------------------------------------------------------------------------- loading
def load_state(spec: WeightsSpec) -> tuple[dict[str, torch.Tensor], str, str, str | None]:
    """The state_dict an entry names: ``(state, file, format, sha256)``.

    Raises:
        WeightsError: the file is missing (message: the file name to download and the publisher's URL), its
            sha256 differs from the entry's, it cannot be read; torchvision/timm errors (see
            :mod:`fertrain.weights.sources`).
    """
    if spec.source == "file":
        if not spec.path:
            raise WeightsError(_missing_file_message(spec, None))
        path = Path(spec.path).expanduser()
        if not path.is_file():
            raise WeightsError(_missing_file_message(spec, path))
        digest = sha256_of(path)
        if spec.sha256 and digest != spec.sha256:
            raise WeightsError(f"{path}: sha256 {digest} differs from the entry {spec.name!r} ({spec.sha256}): a "
                               f"different or damaged file. Download {spec.file_name or 'it'} again from {spec.url}, "
                               "or set weights.sha256=null if you mean to use this file")
        state, fmt = extract_state_dict(read_checkpoint(path, spec.weights_only), str(path))
        return state, str(path), fmt, digest
    from fertrain.weights import sources

    if spec.source == "torchvision":
        return sources.torchvision_state(spec)
    if spec.source == "timm":
        return sources.timm_state(spec)
    raise WeightsError(f"weights entry {spec.name!r}: nothing to load (source {spec.source!r})")


def _missing_file_message(spec: WeightsSpec, path: Path | None) -> str:
    where = f"{path.absolute()} does not exist" if path else "weights.path is not set"
    get = (f"download {spec.file_name or 'the file'} from {spec.url} (the publisher's page) and pass "
           f"weights.path=/where/it/is/{spec.file_name or '<file>'}") if spec.url else "pass weights.path=<file>"
    return (f"weights {spec.name!r}: {where}. fertrain never downloads this file: {get} "
            "(or weights=none to train from random initialisation)")


def load_into(module: nn.Module, spec: WeightsSpec | Mapping[str, Any], *, arch: str, owner: str) -> LoadReport | None:
    """Load an entry's weights into a backbone, strictly (see the module docstring).

    Args:
        module: the backbone (modified in place).
        spec: the entry (a :class:`WeightsSpec` or the ``weights`` config node).
        arch: the backbone's architecture (a key of ``ARCHS``).
        owner: name for messages, e.g. ``"MSCM.backbone"``.

    Returns:
        The report (None for ``source: none``). Logged at INFO; the normalisation check is logged as a WARNING
        naming both normalisations and kept in ``report.normalization``.

    Raises:
        WeightsError: the entry is for another architecture; the file is missing, has the wrong sha256 or
            cannot be read; coverage below 100% outside ``allow_missing``; unused file keys outside ``ignore``;
            a shape mismatch; nothing matches.
    """
    spec = WeightsSpec.from_config(spec)
    if not spec.enabled:
        return None
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone arch {arch!r}; known: {list(ARCHS)}")
    if spec.arch != arch:
        raise WeightsError(f"weights {spec.name!r} hold a {spec.arch} backbone ({ARCHS.get(spec.arch, '?')}), but "
                           f"{owner} is a {arch} ({ARCHS[arch]}): choose weights for {arch}, or another model")
    state, file, fmt, digest = load_state(spec)
    report, to_load = plan_load(state, module, spec, target=f"{owner} ({arch})", file=file, fmt=fmt)
    report.sha256, report.sha256_expected = digest, spec.sha256
    if report.error:
        raise WeightsError(report.error)
    result = module.load_state_dict(to_load, strict=False)
    left = [k for k in result.missing_keys if not k.endswith(COUNTER_SUFFIX) and k not in set(report.allowed_missing)]
    if result.unexpected_keys or left:  # cannot happen after plan_load; a guard against a wrong plan
        raise RuntimeError(f"{file}: load_state_dict disagreed with the plan: missing {left[:5]}, "
                           f"unexpected {result.unexpected_keys[:5]}")
    mismatch = spec.normalization_mismatch()
    report.normalization = {"declared": {"mean": _l(spec.mean), "std": _l(spec.std),
                                         "input_range": _l(spec.input_range)},
                            "applied": {"mean": _l(spec.applied_mean), "std": _l(spec.applied_std)},
                            "matches": mismatch is None}
    if mismatch:
        log.warning("%s", mismatch)
    log.info("%s", report.summary())
    return report


def _l(v: Sequence[float] | None) -> list[float] | None:
    return None if v is None else list(v)


def dry_run(path: str | Path, module: nn.Module, spec: WeightsSpec, *, owner: str) -> LoadReport:
    """:func:`plan_load` of a local file onto ``module`` without loading (``fertrain.weights inspect --model``)."""
    state, fmt = extract_state_dict(read_checkpoint(path, spec.weights_only), str(path))
    report, _ = plan_load(state, module, spec, target=owner, file=str(path), fmt=fmt)
    report.sha256 = sha256_of(path)
    return report
