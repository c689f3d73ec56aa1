"""Export a trained recognition model: ``python -m fertrain.export ckpt=PATH format=onnx|torchscript [key=value ...]``.

The network of a checkpoint written by ``python -m fertrain`` (rebuilt from the config stored in it, like
``fertrain.predict``) is exported with its weights, in eval mode:

- ``format=onnx``: ``torch.onnx.export(..., dynamo=True)`` (the maintained ``torch.export``-based exporter; needs
  the ``onnx`` and ``onnxscript`` packages: ``pip install 'fertrain[export]'``), one self-contained ``.onnx`` file,
  input ``video`` float ``(B, T, C, H, W)`` with a dynamic batch dimension, output ``logits`` ``(B, K)``.
- ``format=torchscript``: ``torch.jit.trace`` to a ``.pt`` file (TorchScript is deprecated by PyTorch in favour of
  ``torch.export``; it still runs in C++ and older runtimes).

The input is what the model sees in training: the clip after the eval transform, **normalised**
``(x / 255 - mean) / std`` per channel (:func:`fertrain.data.datamodule.normalize_video`); ``T``, ``H``, ``W`` are
fixed at the run's (``T`` from its eval sampler, ``H = W = data.image_size``). A JSON file beside the export
(``<out>.json``) records the input shape, the mean and std, the class names in logit order, the source checkpoint
and the check below.

**Check** (``check=true``, default): the export is run on a random clip (seed 0; batch 2, so the dynamic batch
is exercised) by onnxruntime (ONNX) or ``torch.jit.load`` (TorchScript) and its logits are compared with the PyTorch
model's; more than ``atol`` (default 1e-4) apart is an error (exit 1) and nothing is left at ``out``.

Keys: ``ckpt`` (required), ``format`` (required), ``out`` (default: beside the checkpoint,
``<ckpt stem>.onnx``/``.pt``), ``frames`` / ``size`` (override ``T`` / ``H = W``), ``opset`` (ONNX opset, default
the exporter's), ``check`` (true/false), ``atol``, ``device`` (default cpu).

Exit status (:mod:`fertrain.cli`): 0 exported and checked; 1 the check failed or the export broke; 2 usage (unknown
key, missing ckpt/format, a checkpoint that is not a recognition model, onnx/onnxruntime not installed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from fertrain.cli import RunFailure, UsageError, guarded

log = logging.getLogger("fertrain.export")

FORMATS = ("onnx", "torchscript")
KEYS = ("ckpt", "format", "out", "frames", "size", "opset", "check", "atol", "device")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


def clip_shape(cfg: dict[str, Any]) -> tuple[int, int, int, int]:
    """``(T, C, H, W)`` of one clip of the run: ``T`` frames from its eval sampler, ``H = W = data.image_size``.

    Raises:
        UsageError: the config has no ``data.image_size`` or sampler.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    data = cfg.get("data") or {}
    sampler_cfg = (data.get("datamodule") or {}).get("sampler")
    size = data.get("image_size")
    if sampler_cfg is None or not isinstance(size, int):
        raise UsageError("the checkpoint's config has no data.datamodule.sampler or integer data.image_size; pass "
                         "frames= and size=")
    sampler = instantiate(OmegaConf.create(sampler_cfg))
    length = max(int(data.get("predict_window") or 0), 256)  # a window long enough for every sampler
    frames = len(sampler(length, False, np.random.default_rng(0)))
    return frames, 3, size, size


def export_model(net: torch.nn.Module, example: torch.Tensor, fmt: str, out: Path, opset: int | None = None) -> Path:
    """Write ``net`` (eval mode) for input like ``example`` ``(B >= 2, T, C, H, W)`` as ``fmt`` to ``out``.

    Raises:
        UsageError: unknown format, or the ONNX exporter's packages are missing.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    if fmt == "onnx":
        for pkg in ("onnx", "onnxscript"):
            try:
                __import__(pkg)
            except ImportError:
                raise UsageError(f"format=onnx needs the {pkg!r} package: pip install 'fertrain[export]'") from None
        batch = torch.export.Dim("batch", min=1, max=4096)
        kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
        torch.onnx.export(net, (example,), str(out), dynamo=True, external_data=False, input_names=["video"],
                          output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False, **kwargs)
    elif fmt == "torchscript":
        with warnings.catch_warnings(), _traceable_correlation():
            # "torch.jit.trace is deprecated": the user asked for TorchScript (the module docstring says it)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated", category=FutureWarning)
            # "Converting a tensor to a Python boolean/float ...": shape checks become constants, as intended (every
            # size but the batch is fixed by design; check_export compares the result with the model)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            traced = torch.jit.trace(net, example)
        traced.save(str(out))
    else:
        raise UsageError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    return out


@contextlib.contextmanager
def _traceable_correlation() -> Iterator[None]:
    """While tracing for TorchScript, MSCM's cost volumes are computed with plain tensor ops.

    MSCM computes its cost volumes with a Python ``torch.autograd.Function`` (row matrix products with a
    hand-written backward, for training speed), which ``torch.jit.trace`` cannot record. Export needs no backward,
    so ``fertrain.models.mscm.correlation_volumes`` switches to the definition itself (sum over channels of ``f1``
    times the shifted, zero-padded ``f2``, one channel per displacement); :func:`check_export` compares the result
    with the untouched PyTorch model, so a drift between the two fails the export.
    """
    from fertrain.models import mscm

    previous = mscm._PLAIN_OPS
    mscm._PLAIN_OPS = True
    try:
        yield
    finally:
        mscm._PLAIN_OPS = previous


def run_export(path: Path, fmt: str, x: torch.Tensor) -> np.ndarray:
    """Logits of the exported model at ``path`` for ``x`` (onnxruntime on CPU, or ``torch.jit.load``).

    Raises:
        UsageError: onnxruntime is not installed.
    """
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError("checking an ONNX export needs onnxruntime: pip install 'fertrain[export]' "
                             "(or check=false)") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"video": x.numpy()})[0]
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": loading TorchScript is the point here
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(x).numpy()


def check_export(net: torch.nn.Module, path: Path, fmt: str, shape: Sequence[int], atol: float = 1e-4,
                 seed: int = 0) -> float:
    """Largest absolute logit difference between ``net`` and its export on a random normal clip batch of 2.

    Raises:
        RunFailure: the difference exceeds ``atol`` or the shapes differ.
    """
    x = torch.randn((2, *shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net.eval().cpu()(x).numpy()
    got = run_export(path, fmt, x)
    if got.shape != ref.shape:
        raise RunFailure(f"{path}: exported model returns shape {got.shape}, PyTorch {ref.shape}")
    diff = float(np.abs(got - ref).max())
    if not diff <= atol:
        raise RunFailure(f"{path}: {fmt} export differs from the PyTorch model by {diff:.3g} > atol={atol:g} on a "
                         f"random clip {tuple(x.shape)}")
    return diff


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """``key=value`` tokens -> dict.

    Raises:
        UsageError: a token without ``=``, an unknown key, or a missing ``ckpt``/``format``.
    """
    args: dict[str, str] = {}
    for tok in argv:
        key, sep, value = tok.partition("=")
        if not sep:
            raise UsageError(f"expected key=value arguments, got {tok!r} (keys: {', '.join(KEYS)})")
        if key not in KEYS:
            raise UsageError(f"unknown key {key!r}; expected one of {', '.join(KEYS)}")
        args[key] = value
    for key in ("ckpt", "format"):
        if not args.get(key):
            raise UsageError(f"missing {key}=...: usage: python -m fertrain.export ckpt=PATH format=onnx|torchscript")
    if args["format"] not in FORMATS:
        raise UsageError(f"format={args['format']!r}: expected one of {', '.join(FORMATS)}")
    return args


def _int(args: dict[str, str], key: str) -> int | None:
    if key not in args or args[key] in ("", "null"):
        return None
    try:
        return int(args[key])
    except ValueError:
        raise UsageError(f"{key}={args[key]!r}: expected an integer") from None


def export(argv: Sequence[str]) -> dict[str, Any]:
    """Do what ``python -m fertrain.export ARGS`` does; returns the metadata written beside the export."""
    from fertrain.predict import load_run

    args = parse_args(argv)
    ckpt, fmt = Path(args["ckpt"]), args["format"]
    if not ckpt.is_file():
        raise UsageError(f"ckpt={ckpt}: no such checkpoint file")
    net, cfg = load_run(ckpt, args.get("device", "cpu"))
    target = str((cfg.get("task") or {}).get("_target_", ""))
    if not target.endswith("RecognitionTask"):
        raise UsageError(f"ckpt={ckpt}: task {target or '?'} is not a recognition model; fertrain.export exports "
                         f"recognition models (logits (B, K))")
    frames, channels, size, _ = clip_shape(cfg)
    frames = _int(args, "frames") or frames
    size = _int(args, "size") or size
    shape = (frames, channels, size, size)
    out = Path(args.get("out") or ckpt.with_suffix(SUFFIX[fmt]))
    example = torch.randn((2, *shape), generator=torch.Generator().manual_seed(1))
    net = net.cpu().eval()
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    export_model(net, example, fmt, tmp, _int(args, "opset"))
    meta: dict[str, Any] = {
        "format": fmt, "file": out.name, "source_ckpt": str(ckpt.resolve()), "model": cfg["model"].get("_target_"),
        "input": {"name": "video", "shape": ["B", *shape], "layout": "(B, T, C, H, W)", "dtype": "float32",
                  "normalisation": "(x / 255 - mean) / std per RGB channel",
                  "mean": list((cfg["data"]["datamodule"].get("mean") or [])),
                  "std": list((cfg["data"]["datamodule"].get("std") or []))},
        "output": {"name": "logits", "shape": ["B", len(cfg["data"]["class_names"])],
                   "class_names": list(cfg["data"]["class_names"])},
        "check": None,
    }
    try:
        if args.get("check", "true").lower() not in ("false", "0", "no"):
            atol = float(args.get("atol", 1e-4))
            diff = check_export(net, tmp, fmt, shape, atol)
            runtime = "onnxruntime" if fmt == "onnx" else "torch.jit.load"
            meta["check"] = {"runtime": runtime, "max_abs_diff": diff, "atol": atol, "batch": 2, "seed": 0}
            log.info("%s export matches PyTorch: max |diff| = %.3g <= %g", fmt, diff, atol)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps(meta, indent=2))
    return meta | {"path": str(out), "metadata": str(side)}


@guarded("fertrain.export")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.export``; exit status 0, 1 (check failed) or 2 (usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(name)s][%(levelname)s] %(message)s")
    meta = export(argv)
    check = meta["check"]
    print(f"exported {meta['format']}: {meta['path']}\nmetadata: {meta['metadata']}")
    print(f"input video float {tuple(meta['input']['shape'])}, normalised with mean {meta['input']['mean']} and std "
          f"{meta['input']['std']}; output logits over {meta['output']['class_names']}")
    if check:
        print(f"check: {check['runtime']} vs PyTorch on a random clip: max |diff| {check['max_abs_diff']:.3g} "
              f"(atol {check['atol']:g})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    raise SystemExit(main())
