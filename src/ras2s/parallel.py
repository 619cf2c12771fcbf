"""Tiles of one cube on several single-threaded worker processes (CPU).

On a CPU the network's recurrence over bands runs many small operations one after the
other; PyTorch's threads share each of them, and part of every step is serial. Separate
processes, one thread each, each on its own tile, keep every core busy instead: on a
2-core machine two single-threaded workers gave 1.19x the throughput of one process with
two threads (256 x 256 x 31 tiles; docs/scale.md, "Throughput").

:class:`TilePool` is a ``mapper`` for :func:`ras2s.tiling.run_tiled`: tiles go out in
order, at most two per worker ahead of the one being blended, and come back in order, so
the blend (and the result) is the same as one process's, and the memory holds a few
tiles, not the cube.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

import numpy as np

__all__ = ["TilePool", "TileRunner", "cpu_workers"]


class TileRunner(Protocol):
    """Where a cube's tiles run when not in this process (e.g. on a dask cluster).

    The ``tile_workers`` argument of :func:`ras2s.denoise` also takes one, such as
    :class:`ras2s.distributed.ClusterTiles`. ``workers`` counts the tiles it runs at
    once; ``open(model, band_window)`` returns a mapper as :func:`ras2s.tiling.run_tiled`
    takes it (``mapper(fn, blocks)`` yields ``model`` run on each block, in order) that
    also has ``close()``.
    """

    workers: int

    def open(self, model: Any, band_window: int | None) -> Any:
        """A mapper running ``model`` on tiles (``band_window`` bands per run)."""
        ...


_NETWORK: Callable[[np.ndarray], np.ndarray] | None = None


def cpu_workers() -> int:
    """The cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _init(model: Any, band_window: int | None) -> None:
    """Worker start: one PyTorch thread, Ctrl-C left to the parent, the network kept."""
    import functools

    import torch

    from .distributed import tune_malloc
    from .inference import _run_network

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_malloc()  # a parent that started a dask cluster passes on MALLOC_TRIM_THRESHOLD_
    torch.set_num_threads(1)
    global _NETWORK
    _NETWORK = functools.partial(_run_network, model, torch.device("cpu"), band_window=band_window)


def _run(block: np.ndarray) -> np.ndarray:
    assert _NETWORK is not None, "TilePool worker used before its initializer ran"
    return _NETWORK(block)


class TilePool:
    """``workers`` processes, one PyTorch thread each, running ``model`` on CPU tiles.

    Parameters
    ----------
    model:
        The network (a CPU module in eval mode); sent to each worker once, at start.
    band_window:
        Bands per network run (:func:`ras2s.inference.resolve_band_window`).
    workers:
        Number of processes (>= 2 to be useful).

    Use as a context manager; calling the pool (``pool(fn, blocks)``) is the mapper
    :func:`~ras2s.tiling.run_tiled` takes (``fn`` is ignored: the workers run
    ``model``). Workers start with the ``spawn`` method (no fork of a process whose
    PyTorch threads already run), each importing PyTorch: about 2 s, once per cube.
    """

    def __init__(self, model: Any, band_window: int | None, workers: int) -> None:
        self.workers = int(workers)
        self._executor = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(model, band_window),
        )

    def __call__(
        self, fn: Callable[[np.ndarray], np.ndarray], blocks: Iterable[np.ndarray]
    ) -> Iterator[np.ndarray]:
        """``model(block)`` for each block, in order, a few blocks ahead on the workers."""
        pending: collections.deque = collections.deque()
        ahead = 2 * self.workers
        for block in blocks:
            pending.append(self._executor.submit(_run, block))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        """Stop the workers (pending tiles are cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TilePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
