"""``python -m fertrain.weights``: look inside a weights file, and list the known entries.

Usage::

    python -m fertrain.weights inspect FILE                      # format, key prefixes, tensor count, sha256
    python -m fertrain.weights inspect FILE --model mscm         # + a dry run of loading it into MSCM's backbone
    python -m fertrain.weights inspect FILE --model ceflnet --entry emotion_fan_ferplus_resnet18
    python -m fertrain.weights inspect FILE --model mscm --prefix encoder. --rename stage1.:layer1.
    python -m fertrain.weights list                              # conf/weights/*.yaml

``--model`` names a ``conf/model/<name>.yaml``; the model is built with random weights and 7 classes, and the
file is mapped onto the module it loads pretrained weights into (its backbone) exactly as training would map it
(``--entry`` takes the key rules of a weights entry; ``--prefix/--rename OLD:NEW/--ignore/--allow-missing`` set them).
Exit status: 0 (the load would succeed, or no ``--model``), 1 (it would fail: the reason is printed once as
``fertrain.weights: error: ...``), 2 (usage: no such file, model or entry).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Sequence

from fertrain.cli import RunFailure, UsageError, guarded

PROG = "fertrain.weights"


def build_model(name: str):
    """A model of ``conf/model/<name>.yaml`` with random weights and 7 classes (interpolated arguments dropped).

    Raises:
        UsageError: no such model config, or the model has no pretrained backbone.
    """
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from fertrain.config import config_dir

    path = config_dir() / "model" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UsageError(f"--model {name}: no conf/model/{name}.yaml; known models: {', '.join(names)}")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    cls = get_class(raw.pop("_target_"))
    raw.pop("defaults", None)
    kwargs = {k: v for k, v in raw.items() if not (isinstance(v, str) and "${" in v)}
    kwargs.update(num_classes=7)
    model = cls(**kwargs)
    if getattr(model, "backbone_arch", None) is None:
        raise UsageError(f"--model {name}: {cls.__name__} has no pretrained backbone (random initialisation only)")
    return model


def _spec(args: argparse.Namespace):
    from fertrain.weights.spec import WeightsError, WeightsSpec, generic_spec, known_entries, parse_rename

    rules: dict = {}
    if args.entry:
        entries = known_entries()
        if args.entry not in entries:
            raise UsageError(f"--entry {args.entry}: unknown; known entries: {', '.join(entries)}")
        raw = entries[args.entry]
        rules = {k: raw[k] for k in ("prefix", "rename", "ignore", "allow_missing", "arch", "weights_only", "name")
                 if k in raw and raw[k] is not None}
    spec = generic_spec(args.file, **{k: v for k, v in rules.items() if k not in ("rename",)})
    if "rename" in rules:
        spec = dataclasses.replace(spec, rename=parse_rename(rules["rename"], args.entry))
    if args.prefix is not None:
        spec = dataclasses.replace(spec, prefix=None if args.prefix.lower() in ("auto", "null") else args.prefix)
    if args.rename:
        try:
            pairs = parse_rename(args.rename, "--rename")
        except WeightsError as err:
            raise UsageError(str(err)) from None
        spec = dataclasses.replace(spec, rename=spec.rename + pairs)
    if args.ignore:
        spec = dataclasses.replace(spec, ignore=spec.ignore + tuple(args.ignore))
    if args.allow_missing:
        spec = dataclasses.replace(spec, allow_missing=spec.allow_missing + tuple(args.allow_missing))
    if args.unsafe_pickle:
        spec = dataclasses.replace(spec, weights_only=False)
    try:
        return WeightsSpec.from_config(spec.as_dict())
    except WeightsError as err:
        raise UsageError(str(err)) from None


def inspect(args: argparse.Namespace) -> int:
    """The ``inspect`` command (see the module docstring)."""
    from fertrain.weights.loader import dry_run, extract_state_dict, prefix_summary, read_checkpoint, sha256_of

    path = Path(args.file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    spec = _spec(args)
    state, fmt = extract_state_dict(read_checkpoint(path, spec.weights_only), str(path))
    values = sum(t.numel() for t in state.values())
    dtypes = Counter(str(t.dtype).replace("torch.", "") for t in state.values())
    print(f"file:       {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"sha256:     {sha256_of(path)}")
    print(f"format:     {fmt}")
    print(f"tensors:    {len(state)} ({values / 1e6:.2f} M values; {', '.join(f'{k} {v}' for k, v in dtypes.items())})")
    print(f"prefixes:   {prefix_summary(list(state))}")
    first = list(state)[:3]
    print(f"first keys: {', '.join(f'{k} {tuple(state[k].shape)}' for k in first)}")
    if not args.model:
        return 0
    model = build_model(args.model)
    owner = f"{type(model).__name__}.backbone"
    report = dry_run(path, model.pretrained_target(), spec, owner=f"{owner} ({model.backbone_arch})")
    print(f"\ndry run onto {report.target} (entry rules: {spec.name}):")
    print(f"  rule:     {report.rule}")
    print(f"  loaded:   {report.loaded}/{report.total} tensors ({report.coverage:.0%})")
    if report.missing:
        allowed = f", {len(report.allowed_missing)} allowed by allow_missing" if report.allowed_missing else ""
        print(f"  missing:  {len(report.missing)}{allowed} (first: {', '.join(report.missing[:4])})")
    if report.ignored:
        shown = ", ".join(report.ignored[:6])
        print(f"  ignored:  {len(report.ignored)} file keys ({shown}) [ignore={list(spec.ignore)}]")
    if report.unused:
        print(f"  unused:   {len(report.unused)} file keys under the prefix ({', '.join(report.unused[:6])})")
    if report.outside_prefix:
        print(f"  outside:  {report.outside_prefix} file keys not under the prefix (not for the backbone)")
    if report.error:
        print("  verdict:  WOULD FAIL", flush=True)
        raise RunFailure(report.error)
    print("  verdict:  OK (100% of the backbone, or every missing tensor allowed)")
    return 0


def list_entries() -> int:
    """The ``list`` command: one Markdown row per ``conf/weights/*.yaml`` entry."""
    from fertrain.weights.spec import known_entries

    print("| entry | source | arch | file / enum | mean | std | input range | sha256 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, e in known_entries().items():
        what = e.get("torchvision") or e.get("timm") or e.get("file_name") or "-"
        norm = [e.get("mean"), e.get("std")]
        mean, std = (str(v) if not (isinstance(v, str) and "${" in v) else "from data config" for v in norm)
        sha = (e.get("sha256") or "-")[:16]
        print(f"| {name} | {e.get('source')} | {e.get('arch') or '-'} | {what} | {mean} | {std} | "
              f"{e.get('input_range') or '-'} | {sha} |")
    return 0


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="format, prefixes, tensor count; with --model a dry run of the load")
    p.add_argument("file", help="a weights file (.pth, .pth.tar, .ckpt, ...)")
    p.add_argument("--model", help="a conf/model name (mscm, ceflnet, dmfe, frame_mean, resnet18_image, r3d18, ...)")
    p.add_argument("--entry", help="take the key rules of this conf/weights entry")
    p.add_argument("--prefix", help="prefix to strip (default: detected; 'auto' to detect)")
    p.add_argument("--rename", action="append", metavar="OLD:NEW", help="rename a key prefix (repeatable)")
    p.add_argument("--ignore", action="append", metavar="PATTERN", help="file keys with no place (repeatable)")
    p.add_argument("--allow-missing", action="append", metavar="PATTERN", help="tensors allowed to stay random")
    p.add_argument("--unsafe-pickle", action="store_true", help="torch.load(weights_only=False): trusted files only")
    sub.add_parser("list", help="the known weights entries (conf/weights)")
    args = parser.parse_args(argv)
    if args.command == "list":
        return list_entries()
    return inspect(args)


if __name__ == "__main__":
    raise SystemExit(main())
