"""Training-data order that survives a restart: epoch-seeded shuffling and a loader that resumes mid-epoch.

Lightning (2.x) restores a mid-epoch checkpoint by restoring its progress counters: the resumed epoch runs
only the batches that were not yet trained, ``num_batches - done``, but it asks the training DataLoader for
a *fresh* iterator. A plain ``DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed))``
therefore restarts its generator (so the resumed epoch ``k`` gets epoch 0's order) and yields that order
from its beginning (so the first ``done`` batches are trained twice and the last ``done`` never).

:class:`EpochSampler` makes the order of epoch ``k`` a function of ``(seed, k)`` only (Lightning calls
``set_epoch`` at every epoch start, also after a restart), sharded over the DDP processes like
``DistributedSampler``. :class:`ResumableDataLoader` implements ``state_dict`` / ``load_state_dict``, which
Lightning stores in the checkpoint (``loops.fit_loop.state_dict.combined_loader``) and restores before the
resumed epoch: it records how many batches of which epoch it has handed out and, after a restore, skips
exactly those batches in the same epoch (by index, without loading them, when the sampler is an
:class:`EpochSampler`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader
from torch.utils.data.distributed import DistributedSampler

__all__ = ["EpochSampler", "ResumableDataLoader"]


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed from ``(seed, epoch)``: distinct pairs give unrelated seeds (unlike ``seed + epoch``)."""
    digest = hashlib.sha256(f"{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _process_group() -> tuple[int, int]:
    """``(world size, rank)`` of the default process group, ``(1, 0)`` when there is none."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochSampler(DistributedSampler):
    """Indices of ``dataset`` in an order fixed by ``(seed, epoch)``, this process's shard under DDP.

    A ``torch.utils.data.DistributedSampler`` (so Lightning keeps it under DDP instead of replacing it) whose
    process count and rank default to the initialized default process group, or to one process. Epoch ``e``
    is a permutation drawn by a ``torch.Generator`` seeded from a hash of ``(seed, e)`` (so seed 1 does not
    replay seed 0's epochs shifted by one, as ``seed + e`` would); Lightning calls :meth:`set_epoch` before
    every training epoch. The permutation is dealt out round-robin: process ``r`` of ``n`` gets positions
    ``r, r + n, ...``, so ``n`` processes with batch ``b`` see, batch by batch, the images one process sees
    with batch ``n * b``. Under DDP the permutation is padded with its first indices (or, with
    ``drop_last=True``, truncated) to a multiple of ``n``, as ``DistributedSampler`` does.

    Args:
        dataset: the dataset (only its length is used).
        seed: seed of the shuffling.
        shuffle: shuffle (else the dataset order).
        num_replicas: processes sharing the data; default: the world size of the default process group, or 1.
        rank: this process's rank; default: its rank in the default process group, or 0.
        drop_last: drop the tail that does not divide evenly over the processes instead of padding.
    """

    def __init__(
        self,
        dataset: Sized,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        world_size, own_rank = _process_group()
        super().__init__(
            dataset,  # type: ignore[arg-type]  # only len(dataset) is used
            num_replicas=world_size if num_replicas is None else num_replicas,
            rank=own_rank if rank is None else rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self._skip = 0

    def skip_next(self, count: int) -> None:
        """Leave out the first ``count`` indices of the next pass only (``len`` is unchanged)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._skip = count

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
            indices = torch.randperm(size, generator=generator).tolist()
        else:
            indices = list(range(size))
        if self.drop_last:
            indices = indices[: self.total_size]
        else:  # pad with the first indices (repeated if needed), as DistributedSampler does
            indices += (indices * math.ceil(self.total_size / max(size, 1)))[: self.total_size - size]
        indices = indices[self.rank : self.total_size : self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position in the epoch is saved in and restored from Lightning checkpoints.

    Takes ``DataLoader``'s arguments. :meth:`state_dict` is ``{"epoch", "batches"}``: the sampler's epoch
    (``sampler.epoch``, ``None`` if it has none) and the batches the current iterator has handed out. After
    :meth:`load_state_dict`, the next iterator of the *same* epoch starts after those batches (counted as
    handed out, so a second restart in that epoch is exact too); a state of another epoch, or of a finished
    or unstarted epoch, is dropped. The skipped batches are left out by index when the sampler has
    :meth:`EpochSampler.skip_next` and batches are ``batch_size`` consecutive indices (no data is loaded),
    and otherwise drawn and discarded.

    The batches a process has handed out are the batches it trained on because Lightning does not prefetch
    from loaders with a length. For an exact resume use a sampler whose order depends only on the epoch
    (:class:`EpochSampler`), and no random data augmentation: random number generator states are not in
    Lightning checkpoints.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out = 0
        self._iterator_epoch: int | None = None
        self._pending: dict[str, Any] | None = None

    def _sampler_epoch(self) -> int | None:
        sampler = self.batch_sampler.sampler if isinstance(self.batch_sampler, BatchSampler) else self.sampler
        epoch = getattr(sampler, "epoch", None)
        return epoch if isinstance(epoch, int) else None

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch": sampler epoch or None, "batches": batches the current iterator handed out}``."""
        epoch = self._iterator_epoch if self._iterator_epoch is not None else self._sampler_epoch()
        return {"epoch": epoch, "batches": self._handed_out}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next iterator skip ``state_dict["batches"]`` batches if it is of ``state_dict["epoch"]``."""
        epoch, batches = state_dict["epoch"], int(state_dict["batches"])
        if batches < 0:
            raise ValueError(f"batches must be >= 0, got {batches}")
        self._pending = {"epoch": epoch, "batches": batches}

    def _start_skip(self, batches: int) -> Iterator[Any]:
        """A fresh iterator positioned after ``batches`` batches of the current epoch."""
        sampler = self.sampler
        by_index = (
            type(self.batch_sampler) is BatchSampler
            and self.batch_sampler.sampler is sampler
            and isinstance(sampler, EpochSampler)
            and self.batch_size is not None
        )
        if by_index:
            sampler.skip_next(batches * self.batch_size)
            return super().__iter__()
        iterator = super().__iter__()
        for _ in range(batches):
            next(iterator)
        return iterator

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a generator, not a _BaseDataLoaderIter
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        # A generator: the epoch is read at the first batch, after Lightning's `set_epoch`.
        epoch = self._sampler_epoch()
        pending, self._pending = self._pending, None
        skip = 0
        if pending is not None and pending["epoch"] == epoch and 0 < pending["batches"] < len(self):
            skip = pending["batches"]
        self._iterator_epoch, self._handed_out = epoch, skip
        iterator = self._start_skip(skip) if skip else super().__iter__()
        for batch in iterator:
            self._handed_out += 1
            yield batch
