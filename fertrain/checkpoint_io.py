"""Crash-safe checkpoint files: write ``<path>.tmp`` beside the target, fsync, then ``os.replace``.

Why not Lightning's own ``TorchCheckpointIO`` (lightning 2.6): it serialises into memory and writes inside an fsspec
transaction. For a local path fsspec writes the bytes to a ``tempfile.mkstemp()`` file in the system temp directory
and commits with ``shutil.move``. When that directory is on another file system than the run directory (``/tmp``
on a compute node's local disk or tmpfs, checkpoints on NFS/Lustre — the usual cluster layout) ``shutil.move``
falls back to copying *into the target path*, so a SIGKILL, OOM kill or node failure during the copy leaves a
truncated ``last.ckpt`` in place of the previous good one; nothing is fsynced either, so a power loss can leave an
empty file behind a completed rename. Here the temporary file sits in the target's own directory, so the final
``os.replace`` is one atomic rename on POSIX file systems: readers see the old checkpoint or the new one, never a
partial file. A crash can leave a stale ``<path>.tmp``, which the next save overwrites. A write that fails (disk
full, read-only or vanished directory, quota) removes the temporary file, keeps the previous checkpoint and stops
the run with one :class:`CheckpointWriteError` naming the file and the reason (exit status 1).

Reading: :func:`describe_checkpoint` says what a checkpoint file holds (model class, epoch, global step, config
hash, fertrain version) or raises one :class:`CheckpointError` for a missing, truncated or foreign file;
:func:`check_checkpoint` compares it with what a run expects (resume: same config hash and fertrain version; test:
the same network, key by key and shape by shape) before Lightning loads it, so a mismatch is one message naming
the file, what it holds and what was expected instead of a ``PytorchStreamReader``/``load_state_dict`` trace.

Sources: ``lightning_fabric.utilities.cloud_io._atomic_save``, ``fsspec.implementations.local.LocalFileOpener``,
https://lightning.ai/docs/pytorch/stable/common/checkpointing_expert.html (custom ``CheckpointIO`` plugins).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

from fertrain.cli import RunFailure, UsageError


class CheckpointError(UsageError):
    """A checkpoint named on the command line (or by ``ckpt_path=last``) cannot be used: missing, unreadable,
    truncated, or holding another model / config / fertrain version (exit status 2)."""


class CheckpointWriteError(RunFailure):
    """A checkpoint could not be written; the previous file at that path is intact (exit status 1)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic and durable (temp file in the same directory, fsync of
    the file, ``os.replace``, fsync of the directory). Remote paths (``s3://``, ``gs://``…) are left to Lightning,
    whose object-store uploads are already all-or-nothing.

    Enabled for every trainer config via ``trainer.plugins`` (``conf/trainer/default.yaml``).

    Raises:
        TypeError: ``storage_options`` given (as ``TorchCheckpointIO``, which does not accept them either).
        CheckpointWriteError: the directory cannot be created or written (disk full, read-only, permissions);
            the previous checkpoint at ``path`` is kept.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO.save_checkpoint(..., storage_options={storage_options!r}) is not supported: "
                "use a custom CheckpointIO plugin if you need storage_options"
            )
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException as err:  # also KeyboardInterrupt: never leave a half-written temp file behind
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(err, OSError) or (isinstance(err, RuntimeError) and _is_write_error(err)):
                kept = "the previous file is kept unchanged" if target.is_file() else "no earlier file existed"
                reason = (f"{errno.errorcode.get(err.errno, err.errno)}: {err.strerror}"
                          if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0])
                raise CheckpointWriteError(f"could not write checkpoint {target} ({reason}); {kept}. Free disk "
                                           "space or make the run directory writable, then resume with "
                                           "ckpt_path=last") from err
            raise
        _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Persist a rename (POSIX: the directory entry is durable only once the directory is fsynced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # some network file systems refuse fsync on directories; the rename itself is done
        pass
    finally:
        os.close(fd)


def _is_write_error(err: RuntimeError) -> bool:
    """torch.save reports a failed write of its zip writer as RuntimeError ("... file write failed")."""
    text = str(err)
    return "write failed" in text or "PytorchStreamWriter" in text


# ------------------------------------------------------------------------------------------------ reading
def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """What a checkpoint file holds, without building anything.

    Returns:
        ``{"path", "bytes", "epoch", "global_step", "model_class", "config_hash", "fertrain_version",
        "lightning_version", "weights_only", "state_dict"}``, where ``state_dict`` maps parameter names to shapes
        (tuples) and unknown entries are None.

    Raises:
        CheckpointError: the file is missing, empty, truncated or not a PyTorch checkpoint (names the file,
            its size and the reader's complaint), or not a Lightning checkpoint (no ``state_dict``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    size = path.stat().st_size
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=size > 0)
    except Exception as err:  # noqa: BLE001 - every unreadable file gets the same one message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} ({size} bytes) cannot be read: it is truncated, corrupt or not a "
                              f"PyTorch checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"checkpoint {path} holds no 'state_dict' ({keys}): expected a checkpoint written by "
                              "`python -m fertrain`")
    meta = ckpt.get("fertrain") or {}
    cfg = ckpt.get("fertrain_config") or {}
    model_class = meta.get("model_class") or (cfg.get("model") or {}).get("_target_")
    return {
        "path": str(path), "bytes": size, "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
        "model_class": model_class, "config_hash": meta.get("config_hash"),
        "fertrain_version": meta.get("version"), "lightning_version": ckpt.get("pytorch-lightning_version"),
        "weights_only": "optimizer_states" not in ckpt,
        "state_dict": {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if hasattr(v, "shape")},
    }


def holds(info: Mapping[str, Any]) -> str:
    """One phrase: what :func:`describe_checkpoint` found (model class, epoch, config hash, version)."""
    short = (info.get("config_hash") or "none")[:19]
    return (f"{info.get('model_class') or 'an unknown model'} at epoch {info.get('epoch')} "
            f"(config hash {short}, fertrain {info.get('fertrain_version') or 'unknown'})")


def check_checkpoint(path: str | Path, model: torch.nn.Module, *, model_class: str, config_hash: str | None = None,
                     fertrain_version: str | None = None) -> dict[str, Any]:
    """Check that ``path`` fits the run before Lightning loads it; returns :func:`describe_checkpoint`'s dict.

    Args:
        path: the checkpoint.
        model: the run's LightningModule (its ``state_dict`` keys and shapes are compared).
        model_class: the run's network class, dotted (named in the message).
        config_hash: when resuming, the run's config hash, which the checkpoint must carry (None: not compared).
        fertrain_version: when resuming, the running fertrain version (None: not compared).

    Raises:
        CheckpointError: unreadable (see :func:`describe_checkpoint`); other parameter names or shapes (another
            model or another model config); for a resume, another config hash or fertrain version. One message:
            the file, what it holds, what was expected.
    """
    info = describe_checkpoint(path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in info["state_dict"]]
    unexpected = [k for k in info["state_dict"] if k not in expected]
    shapes = [f"{k} {info['state_dict'][k]} vs {expected[k]}" for k in expected
              if k in info["state_dict"] and info["state_dict"][k] != expected[k]]
    if missing or unexpected or shapes:
        detail = "; ".join(part for part in (
            f"{len(missing)} parameters missing (e.g. {', '.join(missing[:3])})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})" if unexpected else "",
            f"{len(shapes)} with other shapes (e.g. {', '.join(shapes[:2])})" if shapes else "") if part)
        raise CheckpointError(f"checkpoint {path} holds {holds(info)}; this run expects {model_class}: {detail}. "
                              "Use a checkpoint of the same model and model config")
    if config_hash is not None and info["config_hash"] not in (None, config_hash):
        raise CheckpointError(f"checkpoint {path} holds {holds(info)}; resuming this run expects config hash "
                              f"{config_hash[:19]}: it was written by another configuration")
    if fertrain_version is not None and info["fertrain_version"] not in (None, fertrain_version):
        raise CheckpointError(f"checkpoint {path} holds {holds(info)}; this is fertrain {fertrain_version}: a run "
                              "is resumed with the version that started it (install that version, or start a new "
                              "run from these weights)")
    return info
