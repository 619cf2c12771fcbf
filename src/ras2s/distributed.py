"""Files over a ``dask.distributed`` cluster: ``ras2s denoise FILES --dask ADDRESS``.

:func:`denoise_on_cluster` submits one task per file to the cluster's workers. Each
task calls :func:`ras2s.batch.denoise_file`, the function ``--workers`` and the serial
run use, so a file's output, its sidecar and its warnings are the same whichever way it
ran; the worker writes them itself, atomically, at the output path planned (and checked)
by the caller before any work: the paths must name the same storage on every worker (a
shared or network file system, or one machine). Results come back as
:class:`~ras2s.batch.FileResult`, in the order they finish, and are reported by the CLI
exactly as ``--workers`` reports them.

``ADDRESS`` is a scheduler's address (``tcp://host:8786``; a SLURM or cloud cluster,
docs/scale.md), or ``local:N`` for a :class:`distributed.LocalCluster` of ``N`` worker
processes with one thread each, started and closed here. Every worker needs ras2s
installed (the same version as the client). The network is loaded once per worker
process (:func:`worker_model`) and torch uses ``settings.threads`` threads there
(``local:N``: 1; a remote worker's default is its environment's, which dask's nanny
sets to ``OMP_NUM_THREADS=1``: one torch thread per dask thread).

With fewer files than the cluster has worker threads (one large file, say), the files
are run here one after the other and each one's tiles go to the workers
(:class:`ClusterTiles`): the same result as a serial run, written by this process.
``--dask-split files|tiles`` chooses either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .batch import DenoiseSettings, FileResult
from .errors import InputError, Ras2sError

__all__ = [
    "cluster_client",
    "denoise_on_cluster",
    "denoise_task",
    "ClusterTiles",
    "parse_address",
    "remember_model",
    "tune_malloc",
    "worker_model",
]

_LOCAL = re.compile(r"^local(?::(\d+))?$")

# ------------------------------------------------------------------ the network per process

_MODELS: dict[tuple[str, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()
_MALLOC_TUNED = False


def tune_malloc() -> None:
    """Give back glibc's large-allocation thresholds that a dask nanny takes away.

    A nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (dask's
    ``distributed.nanny.pre-spawn-environ``). Setting it also turns off glibc's dynamic
    mmap threshold, so every tensor above 128 KiB is mapped and unmapped again, page by
    page: the network ran 2.4x slower in such a process (31 x 96 x 96, one thread,
    6.2-7.1 s against 2.4-3.1 s per run, measured side by side). When that variable is
    set, this sets the thresholds where glibc's own adjustment ends (mmap above 32 MiB,
    trim above 64 MiB). Once per process; nothing elsewhere (other C libraries, or the
    variable unset).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


def worker_model(
    weights: str, device: str = "cpu", precision: str = "auto", *, download: bool = False
) -> Any:
    """The network for ``weights`` on ``device``, loaded once per process and cached.

    A dask worker runs many tasks (files or chunks) in one process, on several threads:
    the first task loads the weights, the others reuse the same eval-mode module
    (inference only, safe to share between threads).
    """
    tune_malloc()
    key = (str(weights), str(device), str(precision))
    with _MODELS_LOCK:
        if key not in _MODELS:
            from .inference import resolve_device
            from .weights import load_model

            _MODELS[key] = load_model(
                weights, resolve_device(device), download=download, precision=precision
            )
        return _MODELS[key]


def remember_model(model: Any, weights: str, device: str = "cpu", precision: str = "auto") -> None:
    """Put an already loaded ``model`` in this process's cache (the client's own copy)."""
    with _MODELS_LOCK:
        _MODELS.setdefault((str(weights), str(device), str(precision)), model)


# ------------------------------------------------------------------------- the cluster


def parse_address(text: str) -> str | int:
    """``"local:N"`` -> ``N`` worker processes (``"local"``: one per core); else the address.

    The address is a scheduler's (``tcp://host:8786``, ``tls://...``) or the path of a
    scheduler file (``.json``, written by ``dask scheduler --scheduler-file``). Raises
    :class:`~ras2s.errors.InputError` for ``local:0``, an address with spaces, or a
    scheduler file that does not exist.
    """
    text = str(text).strip()
    match = _LOCAL.match(text)
    if match:
        workers = int(match.group(1)) if match.group(1) else (os.cpu_count() or 1)
        if workers < 1:
            raise InputError(f"--dask {text}: a local cluster needs at least 1 worker")
        return workers
    if text.startswith("local") or not text or any(c.isspace() for c in text):
        raise InputError(
            f"--dask {text!r}: expected a scheduler address (tcp://host:8786), a scheduler "
            "file (.json) or local:N"
        )
    if text.lower().endswith(".json") and not os.path.isfile(text):
        raise InputError(f"--dask {text}: no such scheduler file")
    return text


@contextlib.contextmanager
def cluster_client(address: Any) -> Iterator[Any]:
    """A ``distributed.Client``: to the scheduler at ``address``, or to a new local cluster.

    ``address`` as :func:`parse_address` returns it: an int starts a
    :class:`distributed.LocalCluster` of that many worker processes, one thread each
    (closed on exit); a string connects to a running scheduler (a ``.json`` string: the
    one its scheduler file names) within dask's connect timeout
    (``distributed.comm.timeouts.connect``, 30 s; environment variable
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT``), else an InputError in one line. A
    ``Client`` (one that needs credentials: dask-gateway, Coiled) is used as it is and
    left open.
    """
    import logging

    from distributed import Client, LocalCluster

    if isinstance(address, Client):
        yield address
        return
    if isinstance(address, int):
        cluster = LocalCluster(
            n_workers=address,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        if str(address).lower().endswith(".json"):
            client = Client(scheduler_file=address)
        else:
            client = Client(address)
    except (OSError, TimeoutError, ValueError) as err:
        import dask

        wait = dask.config.get("distributed.comm.timeouts.connect")
        detail = _one_line(err)
        raise InputError(
            f"--dask {address}: no dask scheduler answered within {wait} ({detail}); "
            "is it running and reachable from here?"
        ) from None
    with client:
        yield client


def _one_line(err: BaseException) -> str:
    """``err``'s message on one line (its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def _worker_threads(client: Any) -> int:
    """The threads of all the workers connected to ``client``'s scheduler (at least 1)."""
    return max(1, sum(int(n) for n in client.nthreads().values()))


def _check_workers(client: Any) -> None:
    """InputError naming the first worker that cannot import ras2s."""
    found = client.run(_ras2s_version, on_error="return")
    for worker, version in sorted(found.items()):
        if isinstance(version, BaseException):
            raise InputError(
                f"dask worker {worker} cannot run ras2s ({type(version).__name__}: {version}); "
                "install ras2s on every worker"
            )


def _ras2s_version() -> str:
    from . import __version__

    return __version__


class ClusterTiles:
    """The tiles of one cube on a dask cluster's workers: a ``tile_workers`` value.

    For ``ras2s.denoise(..., tile_workers=ClusterTiles(client))`` and for ``ras2s denoise
    FILE --dask ADDRESS`` with fewer files than the cluster has worker threads. This
    process (the client) runs the cube's passes as a serial run does: it reads and
    normalises each tile, sends it to a worker, which runs the network on it and sends
    it back, and blends the tiles in order into its own output (in memory, or a scratch
    file when streamed). So the result is the serial run's (same tile plan, same blend
    order; up to the last-bit differences between two processes, which the band
    recurrence can grow to about 1e-3 of the range at a few voxels), nodata, skipped
    bands, the clean range's second pass and the fallback work as serially, and the
    output is written by this process alone: the workers need no shared storage. Per
    tile the input and the output cross the network, float32 (8 MiB each for 256 x 256
    x 31).

    Parameters
    ----------
    client:
        A connected ``distributed.Client``.
    threads:
        PyTorch threads per tile on a worker (``None``: the worker's setting, which a
        nanny starts at one per dask thread).
    device:
        ``"cpu"``; ``"cuda"`` or ``"auto"``: a worker numbered k runs on GPU k modulo
        the GPUs it sees.
    in_flight_bytes:
        Bound on the tiles sent and not yet blended (inputs and outputs, this
        process's memory): at most two tiles per worker thread, and fewer when they
        would pass this.
    """

    def __init__(
        self,
        client: Any,
        *,
        threads: int | None = None,
        device: str = "cpu",
        in_flight_bytes: int = 512 << 20,
    ) -> None:
        self.client = client
        self.threads = threads
        self.device = str(device)
        self.in_flight_bytes = int(in_flight_bytes)
        self.workers = _worker_threads(client)

    def open(self, model: Any, band_window: int | None) -> _ClusterMapper:
        """A mapper running ``model`` (sent once to every worker) on the tiles."""
        return _ClusterMapper(self, model, band_window)

    def __str__(self) -> str:
        return f"dask {self.client.scheduler.address} ({self.workers} worker threads)"


class _ClusterMapper:
    """``mapper(fn, blocks)`` over a cluster (``fn`` is ignored: the workers run the model)."""

    def __init__(self, tiles: ClusterTiles, model: Any, band_window: int | None) -> None:
        import collections
        import copy

        self._tiles = tiles
        self._window = band_window
        self._pending: collections.deque = collections.deque()
        if next(model.parameters()).device.type != "cpu":  # sent to workers from the CPU
            model = copy.deepcopy(model).cpu()
        self._model = tiles.client.scatter(model, broadcast=True, hash=False)

    def __call__(self, fn: Callable, blocks: Iterator[Any]) -> Iterator[Any]:
        del fn
        tiles = self._tiles
        ahead = None
        for block in blocks:
            if ahead is None:  # input and output of each tile in flight
                fits = tiles.in_flight_bytes // max(1, 2 * block.nbytes)
                ahead = max(1, min(2 * tiles.workers, fits))
            self._pending.append(
                tiles.client.submit(
                    _tile_task,
                    self._model,
                    self._window,
                    tiles.threads,
                    tiles.device,
                    block,
                    pure=False,
                )
            )
            if len(self._pending) >= ahead:
                yield self._pending.popleft().result()
        while self._pending:
            yield self._pending.popleft().result()

    def close(self) -> None:
        """Cancel the tiles not yet blended and release the model on the workers."""
        client = self._tiles.client
        if self._pending:
            client.cancel(list(self._pending))
            self._pending.clear()
        client.cancel([self._model])


_ON_DEVICE: dict[tuple[int, str], Any] = {}
#: Tiles this process ran for :class:`ClusterTiles` (what a worker did, for tests and logs).
TILES_RUN = 0


def _tile_task(
    model: Any, band_window: int | None, threads: int | None, device: str, block: Any
) -> Any:
    """Run on a worker: the network on one normalised ``(bands, h, w)`` float32 tile."""
    import torch

    from .inference import _run_network

    global TILES_RUN
    tune_malloc()
    if threads:
        torch.set_num_threads(threads)
    where = _worker_device(device, _worker_rank()[0])
    if where != "cpu":
        with _MODELS_LOCK:
            key = (id(model), where)
            if key not in _ON_DEVICE:
                import copy

                _ON_DEVICE[key] = copy.deepcopy(model).to(where)
            model = _ON_DEVICE[key]
    out = _run_network(model, torch.device(where), block, band_window)
    TILES_RUN += 1
    return out


def denoise_task(
    source: str, target: str, settings: DenoiseSettings, cwd: str, preview: str | None = None
) -> FileResult:
    """Run on a worker: denoise one file with :func:`ras2s.batch.denoise_file`.

    Relative paths are taken from ``cwd`` (the client's) unless the worker runs there.
    Errors are returned, not raised, as ``--workers`` reports them: a
    :class:`~ras2s.errors.Ras2sError` as its message, anything else as an internal error.
    """
    from .batch import denoise_file

    tune_malloc()
    here = os.getcwd() == cwd

    def path(name: str) -> Path:
        return Path(name) if here or os.path.isabs(name) else Path(cwd) / name

    rank, address = _worker_rank()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    settings = dataclasses.replace(settings, device=_worker_device(settings.device, rank))
    error = None
    found: tuple[str, ...] = ()
    try:
        model = None
        if settings.method == "ras2s":
            model = worker_model(
                settings.weights, settings.device, settings.precision, download=settings.download
            )
        found = denoise_file(
            path(source), path(target), settings, model, path(preview) if preview else None
        )
    except Ras2sError as err:
        error = str(err)
    except Exception as err:  # a bug: report it and go on with the other files
        error = f"internal error: {type(err).__name__}: {err} (rerun with --debug)"
    return FileResult(Path(source), Path(target), found, error, rank, os.getpid()), address


def _worker_rank() -> tuple[int, str]:
    """The worker's number (a local cluster names them 0..N-1; else -1) and address."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return 0, ""
    name = worker.name
    return (int(name) if isinstance(name, int) else -1), worker.address


def _worker_device(device: str, rank: int) -> str:
    """``cuda``/``auto`` on a worker: GPU ``rank`` modulo the GPUs it sees."""
    if device not in ("cuda", "auto"):
        return device
    import torch

    if not torch.cuda.is_available():
        return "cpu" if device == "auto" else device
    return f"cuda:{max(rank, 0) % torch.cuda.device_count()}"


def denoise_on_cluster(
    sources: list[Path],
    targets: list[Path],
    settings: DenoiseSettings,
    address: Any,
    *,
    preview: Path | None = None,
    notify: Callable[[str], None] | None = None,
    split: str = "auto",
    model: Any = None,
) -> Iterator[FileResult]:
    """Denoise ``sources`` into ``targets`` on a dask cluster; yield results as they finish.

    ``address``: a scheduler address or scheduler file, an int for a local cluster of
    that many worker processes (:func:`parse_address`, :func:`cluster_client`), or a
    ``distributed.Client`` already connected (left open). With a local cluster and
    ``settings.threads`` unset, torch runs one thread per worker. ``notify`` gets
    one-line messages (waiting for workers).

    ``split`` says what a task is. ``"files"``: one file per task, the largest first;
    the workers write the outputs, so the paths must be storage every worker sees. A task
    lost with its worker (killed, out of memory, after dask's retries) yields an error
    result for its file. ``"tiles"``: the files one after the other here, each one's
    tiles spread over the workers (:class:`ClusterTiles`; this process reads and writes
    the files, ``model`` is its network, loaded here when ``None``). ``"auto"``: tiles
    when there are fewer files than worker threads and the method is the network, so
    that one large file uses the whole cluster, else files. On an interrupt the pending
    tasks are cancelled.
    """
    if split not in SPLITS:
        raise InputError(f"--dask-split must be one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(address, int) and settings.threads is None:
        settings = dataclasses.replace(settings, threads=1)
    with cluster_client(address) as client:
        if not client.scheduler_info().get("workers"):
            if notify is not None:
                where = client.scheduler.address
                notify(f"waiting for a dask worker to join the scheduler at {where}")
            client.wait_for_workers(1)
        _check_workers(client)
        if split == "auto":
            network = settings.method == "ras2s"
            split = "tiles" if network and len(sources) < _worker_threads(client) else "files"
        if split == "tiles":
            if settings.method != "ras2s":
                raise InputError("--dask-split tiles runs the network; give --method ras2s")
            yield from _tiles_on_cluster(client, sources, targets, settings, preview, model)
        else:
            yield from _files_on_cluster(client, sources, targets, settings, preview)


#: What one dask task is: ``denoise_on_cluster(split=...)``, ``--dask-split``.
SPLITS = ("auto", "files", "tiles")


def _tiles_on_cluster(
    client: Any,
    sources: list[Path],
    targets: list[Path],
    settings: DenoiseSettings,
    preview: Path | None,
    model: Any,
) -> Iterator[FileResult]:
    """Each file here in turn, its tiles on the cluster's workers (:class:`ClusterTiles`)."""
    from .batch import denoise_file

    if model is None:
        model = worker_model(
            settings.weights, settings.device, settings.precision, download=settings.download
        )
    runner = ClusterTiles(client, threads=settings.threads, device=settings.device)
    here = dataclasses.replace(settings, tile_workers=runner)
    for source, target in zip(sources, targets, strict=True):
        error = None
        found: tuple[str, ...] = ()
        try:
            found = denoise_file(source, target, here, model, preview)
        except Ras2sError as err:
            error = str(err)
        except Exception as err:  # a tile lost with its worker, after dask's retries
            detail = _one_line(err)
            error = f"{source}: the dask tiles failed: {detail}"
        yield FileResult(source, target, found, error, 0, os.getpid())


def _files_on_cluster(
    client: Any,
    sources: list[Path],
    targets: list[Path],
    settings: DenoiseSettings,
    preview: Path | None,
) -> Iterator[FileResult]:
    """One task per file, the largest first; results in the order they finish."""
    from distributed import as_completed

    from .batch import split_between_workers

    # the dask worker is the unit of parallelism: no progress bars, no tile pool in it
    settings = dataclasses.replace(settings, progress=False, tile_workers=1)
    cwd = os.getcwd()
    order = split_between_workers(sources, 1)[0]  # largest first
    futures = {}
    for i in order:
        future = client.submit(
            denoise_task,
            str(sources[i]),
            str(targets[i]),
            settings,
            cwd,
            None if preview is None else str(preview),
            pure=False,
            key=f"ras2s-denoise-{i}-{os.getpid()}-{id(sources)}",
        )
        futures[future] = i
    ranks: dict[str, int] = {}
    try:
        for future in as_completed(futures):
            i = futures[future]
            try:
                result, where = future.result()
            except Exception as err:  # the task was lost with its worker
                detail = _one_line(err)
                message = f"{sources[i]}: the dask task failed: {detail}"
                result, where = FileResult(sources[i], targets[i], (), message), ""
            rank = result.worker
            if rank < 0:  # a worker without a number: numbered by its first result
                rank = ranks.setdefault(where, len(ranks))
            yield dataclasses.replace(result, source=sources[i], target=targets[i], worker=rank)
    finally:
        client.cancel(list(futures))
