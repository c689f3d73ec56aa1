"""Training order and augmentation that a resumed run reproduces exactly (also from a mid-epoch checkpoint).

Three pieces, all *ours* (no public FER codebase resumes mid-epoch exactly):

- :class:`SampleKey`: an ``int`` (the sample index, so ``dataset[key]`` works as before) that also carries the
  ``epoch``. A dataset derives the sample's random draws (temporal jitter, augmentation) from
  ``(seed, epoch, index)`` (:meth:`fertrain.data.clip_dataset.SeededDataset.rng_for`), so they are a pure function
  of where the sample is used, not of how many samples a process (or a DataLoader worker, persistent or not) drew
  before. Nothing about them needs saving.
- :class:`EpochSampler`: the training order, a permutation (or, with ``weights``, a class-balanced draw with
  replacement) from a generator seeded by ``(seed, epoch)``; split across DDP ranks like
  ``torch.utils.data.DistributedSampler`` (which it subclasses, so Lightning does not wrap it).
- :class:`ResumableDataLoader`: a ``DataLoader`` with Lightning's ``state_dict``/``load_state_dict`` protocol
  (``lightning_fabric.utilities.types._Stateful``; saved by ``pytorch_lightning.loops.fit_loop._FitLoop`` under
  ``loops.fit_loop.state_dict.combined_loader``). Its state is ``{"epoch", "batches"}``: batches handed to the
  training loop in that epoch (Lightning does not prefetch from sized loaders, ``loops/fetchers.py``). After a
  restore, the first iteration of that same epoch skips those batches *at the sampler*, so no sample is decoded
  twice and the rest of the epoch sees exactly the batches an uninterrupted run would have seen. Iteration starts
  lazily (on the first ``next``): Lightning calls ``iter()`` on a resumed run before it calls ``set_epoch``.

Sources: ``pytorch_lightning/loops/training_epoch_loop.py`` (``reset``: "resuming from a checkpoint that ended
before the epoch ended and your dataloader is not resumable"), ``torch/utils/data/distributed.py``.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class SampleKey(int):
    """A sample index that knows its training epoch: ``int(key)`` is the index, ``key.epoch`` the epoch."""

    epoch: int

    def __new__(cls, index: int, epoch: int) -> "SampleKey":
        key = super().__new__(cls, index)
        key.epoch = int(epoch)
        return key

    def __reduce__(self) -> tuple:  # sent to DataLoader workers through a pickling queue
        return (SampleKey, (int(self), self.epoch))

    def __repr__(self) -> str:
        return f"SampleKey({int(self)}, epoch={self.epoch})"


class EpochSampler(DistributedSampler):
    """Training order seeded by ``(seed, epoch)``, yielding :class:`SampleKey` s.

    Args:
        dataset: the training dataset (only its length is used).
        seed: base seed (the run's ``seed``).
        num_replicas, rank: DDP world size and this process's rank (1 and 0 without DDP).
        weights: optional per-sample weights ``(N,)``; then ``N`` indices are drawn with replacement with
            probability proportional to the weight (class-balanced sampling), instead of a permutation.
        drop_last: as ``DistributedSampler`` (pad with the first indices when False).

    Lightning calls :meth:`set_epoch` before every training epoch (``_set_sampler_epoch``).
    """

    def __init__(self, dataset: Dataset, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 weights: Sequence[float] | torch.Tensor | None = None, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed),
                         drop_last=drop_last)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.skip = 0  # leading keys of this rank to leave out (set by ResumableDataLoader on a resume)

    def order(self, epoch: int) -> list[int]:
        """All ``N`` dataset indices of ``epoch`` in training order (before the split across ranks)."""
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + int(epoch))
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.weights is not None:
            return torch.multinomial(self.weights, n, replacement=True, generator=g).tolist()
        return torch.randperm(n, generator=g).tolist()

    def __iter__(self) -> Iterator[SampleKey]:
        indices = self.order(self.epoch)
        if not self.drop_last:  # pad to a multiple of the ranks, as DistributedSampler does
            pad = self.total_size - len(indices)
            indices += (indices * math.ceil(pad / max(len(indices), 1)))[:pad]
        else:
            indices = indices[: self.total_size]
        mine = indices[self.rank: self.total_size: self.num_replicas]
        skip, self.skip = self.skip, 0
        return iter([SampleKey(i, self.epoch) for i in mine[skip:]])


class _LazyIterator:
    """Creates the real DataLoader iterator on the first ``next`` (see the module docstring)."""

    def __init__(self, loader: "ResumableDataLoader") -> None:
        self.loader, self.inner = loader, None

    def __iter__(self) -> "_LazyIterator":
        return self

    def __next__(self) -> Any:
        if self.inner is None:
            self.inner = self.loader._start_epoch()
        batch = next(self.inner)
        self.loader._batches += 1
        return batch

    def __len__(self) -> int:
        return len(self.loader)

    def _shutdown_workers(self) -> None:  # Lightning's teardown calls it on DataLoader iterators
        if self.inner is not None and hasattr(self.inner, "_shutdown_workers"):
            self.inner._shutdown_workers()


class ResumableDataLoader(DataLoader):
    """A training ``DataLoader`` over an :class:`EpochSampler` whose position Lightning saves in checkpoints.

    Same arguments as ``torch.utils.data.DataLoader``, with an :class:`EpochSampler` as ``sampler``. When Lightning
    re-creates the loader with another sampler (``trainer.overfit_batches`` uses a ``SequentialSampler``) it is a
    plain ``DataLoader`` that saves no position.
    """

    def __init__(self, dataset: Dataset, *args: Any, **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        self._batches = 0  # batches handed out in the current epoch
        self._resume: tuple[int, int] | None = None  # (epoch, batches) restored from a checkpoint

    @property
    def resumable(self) -> bool:
        return isinstance(self.sampler, EpochSampler)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return _LazyIterator(self) if self.resumable else super().__iter__()

    def _start_epoch(self) -> Iterator[Any]:
        sampler: EpochSampler = self.sampler  # type: ignore[assignment]
        self._batches = 0
        if self._resume is not None:
            epoch, batches = self._resume
            self._resume = None
            if epoch == sampler.epoch and batches > 0:
                sampler.skip = batches * int(self.batch_size or 1)
                self._batches = batches
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: the epoch being trained and the batches of it handed out so far."""
        if not self.resumable:
            return {}
        return {"epoch": int(self.sampler.epoch), "batches": int(self._batches)}  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip the ``batches`` already trained when this loader next iterates the same ``epoch``."""
        if not state or not self.resumable:
            return
        self._resume = (int(state["epoch"]), int(state["batches"]))
