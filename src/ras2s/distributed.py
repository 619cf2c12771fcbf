"""Many files over a ``dask.distributed`` cluster: ``ras2s denoise FILES --dask ADDRESS``.

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

One large file is one task today. Splitting its windows over the cluster needs the
streaming driver (one window's statistics, one window's denoise, a windowed writer);
:func:`file_windows` is the hook where that plugs in.
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
    "file_windows",
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
        detail = " ".join(str(err).split()) or type(err).__name__
        raise InputError(
            f"--dask {address}: no dask scheduler answered within {wait} ({detail}); "
            "is it running and reachable from here?"
        ) from None
    with client:
        yield client


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


def file_windows(source: Path, settings: DenoiseSettings) -> None:
    """HOOK: the windows of one large file as cluster tasks; ``None`` today (one task).

    When the streaming driver exists (a statistics pass giving the file's range, a
    function denoising one window of a file with a fixed range, and a windowed output,
    ``ras2s.io.create_cube(...).write(window, block)``), this returns a plan: the
    statistics as one task (or a reduction over strips), then one task per group of
    windows, each writing its own windows into the shared temporary output, and a final
    task renaming it and writing the sidecar. :func:`denoise_on_cluster` calls it for
    every file and, while it returns ``None``, sends the whole file as one task.
    """
    del source, settings
    return None


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
) -> Iterator[FileResult]:
    """Denoise ``sources`` into ``targets`` on a dask cluster; yield results as they finish.

    ``address``: a scheduler address or scheduler file, an int for a local cluster of
    that many worker processes (:func:`parse_address`, :func:`cluster_client`), or a
    ``distributed.Client`` already connected (left open). With a local cluster and
    ``settings.threads`` unset, torch runs one thread per worker. The largest files are
    submitted first. ``notify`` gets one-line messages (waiting for workers). A task
    lost with its worker (killed, out of memory, after dask's retries) yields an error
    result for its file; on an interrupt the pending tasks are cancelled.
    """
    from distributed import as_completed

    from .batch import split_between_workers

    if isinstance(address, int) and settings.threads is None:
        settings = dataclasses.replace(settings, threads=1)
    fixed: dict[str, Any] = {"progress": False}
    if "tile_workers" in {f.name for f in dataclasses.fields(settings)}:
        fixed["tile_workers"] = 1  # the dask worker is the unit of parallelism: no pool in it
    settings = dataclasses.replace(settings, **fixed)
    cwd = os.getcwd()
    with cluster_client(address) as client:
        if not client.scheduler_info().get("workers"):
            if notify is not None:
                where = client.scheduler.address
                notify(f"waiting for a dask worker to join the scheduler at {where}")
            client.wait_for_workers(1)
        _check_workers(client)
        order = split_between_workers(sources, 1)[0]  # largest first
        futures = {}
        for i in order:
            file_windows(sources[i], settings)  # None today: the file is one task
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
                    detail = " ".join(str(err).split()) or type(err).__name__
                    message = f"{sources[i]}: the dask task failed: {detail}"
                    result, where = FileResult(sources[i], targets[i], (), message), ""
                rank = result.worker
                if rank < 0:  # a worker without a number: numbered by its first result
                    rank = ranks.setdefault(where, len(ranks))
                yield dataclasses.replace(result, source=sources[i], target=targets[i], worker=rank)
        finally:
            client.cancel(list(futures))
