"""Crash-safe checkpoint files: write ``<path>.tmp`` beside the target, fsync, then ``os.replace``.

Why not Lightning's own ``TorchCheckpointIO`` (lightning 2.6): it serialises into memory and writes inside an fsspec
transaction. For a local path fsspec writes the bytes to a ``tempfile.mkstemp()`` file in the system temp directory
and commits with ``shutil.move``. When that directory is on another file system than the run directory (``/tmp``
on a compute node's local disk or tmpfs, checkpoints on NFS/Lustre — the usual cluster layout) ``shutil.move``
falls back to copying *into the target path*, so a SIGKILL, OOM kill or node failure during the copy leaves a
truncated ``last.ckpt`` in place of the previous good one; nothing is fsynced either, so a power loss can leave an
empty file behind a completed rename. Here the temporary file sits in the target's own directory, so the final
``os.replace`` is one atomic rename on POSIX file systems: readers see the old checkpoint or the new one, never a
partial file. A crash can leave a stale ``<path>.tmp``, which the next save overwrites.

Sources: ``lightning_fabric.utilities.cloud_io._atomic_save``, ``fsspec.implementations.local.LocalFileOpener``,
https://lightning.ai/docs/pytorch/stable/common/checkpointing_expert.html (custom ``CheckpointIO`` plugins).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic and durable (temp file in the same directory, fsync of
    the file, ``os.replace``, fsync of the directory). Remote paths (``s3://``, ``gs://``…) are left to Lightning,
    whose object-store uploads are already all-or-nothing.

    Enabled for every trainer config via ``trainer.plugins`` (``conf/trainer/default.yaml``).

    Raises:
        TypeError: ``storage_options`` given (as ``TorchCheckpointIO``, which does not accept them either).
        OSError: the directory cannot be created or written; the previous checkpoint at ``path`` is kept.
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
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:  # also KeyboardInterrupt: never leave a half-written temp file behind
            with contextlib.suppress(OSError):
                tmp.unlink()
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
