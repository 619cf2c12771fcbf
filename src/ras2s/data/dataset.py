"""Datasets over patch stores, a resumable, rank-aware epoch sampler and store mixing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import InputError
from .augment import augment


class PatchDataset(Dataset):
    """Patches of one split of a patch store, opened memory-mapped (never loaded whole).

    Parameters
    ----------
    path:
        The split's ``.npy`` file ``(n, bands, patch, patch)`` float32.
    augment:
        Random flips / 90-degree rotations (and band reversal with ``spectral_flip``).
    seed:
        Augmentation is drawn from ``default_rng([seed, epoch, index])``: the same
        sample gets the same transform whatever the number of workers, and a resumed
        run sees exactly what an uninterrupted one would.

    Items are indexed by ``int`` or by ``(epoch, index)`` (what :class:`EpochSampler`
    yields); they are ``torch.float32`` tensors ``(bands, patch, patch)``, clean.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        augment: bool = False,
        spectral_flip: bool = False,
        seed: int = 0,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such patch file (run `ras2s prepare` first)")
        self.augment = augment
        self.spectral_flip = spectral_flip
        self.seed = seed
        self._data: np.ndarray | None = None
        shape = np.load(self.path, mmap_mode="r").shape
        if len(shape) != 4:
            raise InputError(f"{self.path}: expected (n, bands, H, W) patches, got {shape}")
        self.shape = tuple(shape)

    @property
    def data(self) -> np.ndarray:
        """The memory-mapped patch array (opened on first use)."""
        if self._data is None:  # opened lazily so each worker maps its own view
            self._data = np.load(self.path, mmap_mode="r")
        return self._data

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        patch = np.array(self.data[index], dtype=np.float32)
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, index])
            patch = augment(patch, rng, spectral_flip=self.spectral_flip)
        return torch.from_numpy(patch)


class EpochSampler(Sampler):
    """A permutation per epoch from ``(seed, epoch)``, sharded across ranks.

    Yields ``(epoch, index)`` pairs for :class:`PatchDataset`. ``set_epoch`` is called
    by Lightning before every epoch. With ``num_replicas > 1`` every rank gets the same
    number of samples (the permutation is padded by wrapping, as
    ``DistributedSampler``). ``epoch_fn``, when given, is asked for the epoch each time
    iteration starts (the training loop passes its own epoch counter, which is restored
    exactly on resume) and overrides ``set_epoch``.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        if n < 1:
            raise InputError("cannot sample from an empty split")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.epoch_fn = epoch_fn
        self.per_rank = -(-n // num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose permutation the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.epoch_fn is not None:
            self.epoch = int(self.epoch_fn())
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        total = self.per_rank * self.num_replicas
        order = np.resize(order, total)  # wraps around to pad
        for index in order[self.rank : total : self.num_replicas]:
            yield (self.epoch, int(index))


class StorePatches(Dataset):
    """Several :class:`PatchDataset` s behind one index: items are keyed ``(store, epoch, index)``.

    Store 0 is the run's own (``--patches``); the others are mixed in by
    :class:`MixedBatchSampler`. Stores may differ in band count and patch size: a batch
    always comes from one store.
    """

    def __init__(self, stores: list[PatchDataset]) -> None:
        if not stores:
            raise InputError("no patch stores to mix")
        self.stores = stores

    def __len__(self) -> int:
        return len(self.stores[0])

    def __getitem__(self, key: tuple[int, int, int]) -> torch.Tensor:
        store, epoch, index = key
        return self.stores[store][(epoch, index)]


class MixedBatchSampler(Sampler):
    """Batches of ``(store, epoch, index)`` keys: each batch from one store, drawn per batch.

    The run's own store (0) is walked by ``sampler`` (an :class:`EpochSampler`), cut into
    batches of ``batch_size`` (the last one shorter, as ``DataLoader``). Batch ``b`` of
    epoch ``e`` comes from mixed-in store ``s`` (1-based) with probability
    ``probs[s - 1]``, drawn from ``default_rng([seed, e, b, 1])`` (the same on every
    rank); its samples are then drawn with replacement from ``default_rng([seed, e, b,
    2, rank, s])``, and the run's batch is skipped. Everything depends on the epoch,
    never on the history, so a resumed run sees exactly what an uninterrupted one would.

    ``sizes``: the number of training patches of each mixed-in store; ``probs`` sum to
    at most 1.
    """

    def __init__(
        self,
        sampler: EpochSampler,
        batch_size: int,
        sizes: list[int],
        probs: list[float],
        *,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if len(sizes) != len(probs):
            raise InputError(f"{len(sizes)} mixed-in stores but {len(probs)} probabilities")
        if any(n < 1 for n in sizes):
            raise InputError("cannot mix in a store without training patches")
        if any(p < 0 for p in probs) or sum(probs) > 1 + 1e-9:
            raise InputError(f"mixing probabilities must be >= 0 and sum to <= 1, got {probs}")
        self.sampler, self.batch_size = sampler, batch_size
        self.sizes, self.probs = list(sizes), list(probs)
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def store_of(self, epoch: int, batch: int) -> int:
        """The store (0: the run's own) that batch ``batch`` of ``epoch`` comes from."""
        u = np.random.default_rng([self.seed, epoch, batch, 1]).random()
        edges = np.cumsum(self.probs)
        return int(np.searchsorted(edges, u, side="right")) + 1 if u < edges[-1] else 0

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        keys = iter(self.sampler)
        batch = 0
        while chunk := list(islice(keys, self.batch_size)):
            epoch = chunk[0][0]
            store = self.store_of(epoch, batch) if self.probs else 0
            if store == 0:
                yield [(0, e, i) for e, i in chunk]
            else:
                rng = np.random.default_rng([self.seed, epoch, batch, 2, self.rank, store])
                picks = rng.integers(self.sizes[store - 1], size=len(chunk))
                yield [(store, epoch, int(i)) for i in picks]
            batch += 1
