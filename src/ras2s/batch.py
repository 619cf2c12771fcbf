"""Denoise many files: one at a time, or spread over several worker processes.

``ras2s denoise --workers N`` uses :func:`denoise_in_workers`: the files are split between
``N`` processes before any work starts (largest first, dealt round-robin), each process
loads the model once and writes each of its files atomically, so every output is written
exactly once, by one process. With ``--device cuda`` worker ``k`` uses GPU ``k`` modulo
the number of GPUs; on CPU the cores are shared out (``threads`` per worker).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue as queue_module
import warnings
from collections.abc import Iterator
from pathlib import Path

from .errors import Ras2sError


@dataclasses.dataclass(frozen=True)
class DenoiseSettings:
    """Everything ``ras2s denoise`` needs to process one file (picklable for workers)."""

    method: str = "ras2s"
    weights: str = "default"
    download: bool = False
    key: str | None = None
    layout: str | None = None
    tile: int | None = None
    overlap: int | None = None
    max_memory: int = 2 << 30
    device: str = "cpu"
    threads: int | None = None
    precision: str = "auto"
    nan_policy: str = "error"
    normalise: str = "minmax"
    sigma: float | None = None
    nodata: float | None = None  # None: the file's GDAL_NODATA / ENVI data ignore value
    skip_bands: str | None = None  # "0-4,103-112"; added to the ENVI bbl = 0 bands
    force: bool = False
    progress: bool = False


@dataclasses.dataclass(frozen=True)
class FileResult:
    """What happened to one input: ``error`` is None on success."""

    source: Path
    target: Path
    warnings: tuple[str, ...] = ()
    error: str | None = None
    worker: int = 0
    pid: int = 0


def denoise_file(
    source: Path,
    target: Path,
    settings: DenoiseSettings,
    model=None,
    preview: Path | None = None,
) -> tuple[str, ...]:
    """Read ``source``, denoise it, write ``target`` atomically; return the warnings raised.

    ``model`` is the loaded network for ``method == "ras2s"`` (ignored otherwise).
    Raises :class:`~ras2s.errors.Ras2sError` for bad input; nothing is written then.
    """
    from .inference import (
        denoise,
        denoise_classical,
        denoise_masked,
        parse_band_list,
        resolve_device,
    )
    from .io import bad_bands, cube_nodata, read_cube, write_atomically, write_cube

    cube = read_cube(source, key=settings.key, layout=settings.layout)
    nodata = settings.nodata if settings.nodata is not None else cube_nodata(cube)
    skip = sorted(
        set(bad_bands(cube)) | set(parse_band_list(settings.skip_bands, cube.data.shape[0]))
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if settings.method == "ras2s":
            result = denoise(
                cube.data,
                nodata=nodata,
                skip_bands=skip or None,
                model=model,
                tile=settings.tile,
                overlap=settings.overlap,
                max_memory=settings.max_memory,
                device=resolve_device(settings.device),
                progress=settings.progress,
                nan_policy=settings.nan_policy,
                normalise=settings.normalise,
            )
        else:
            classical = functools.partial(
                denoise_classical,
                method=settings.method,
                nan_policy=settings.nan_policy,
                normalise=settings.normalise,
                sigma=settings.sigma,
            )
            if nodata is None and not skip:
                result = classical(cube.data)
            else:
                result = denoise_masked(cube.data, classical, nodata=nodata, skip_bands=skip)
    write_cube(target, result, like=cube, force=settings.force)
    if preview is not None:
        from .report import write_preview

        write_atomically(preview, functools.partial(write_preview, cube.data, result))
    return tuple(str(w.message) for w in caught)


def split_between_workers(sources: list[Path], workers: int) -> list[list[int]]:
    """Indices of ``sources`` for each worker: largest files first, dealt round-robin.

    Every index appears in exactly one list; lists may be empty when there are fewer
    files than workers.
    """

    def size(path: Path) -> int:
        try:
            if path.is_dir():
                return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
            return path.stat().st_size
        except OSError:
            return 0

    order = sorted(range(len(sources)), key=lambda i: (-size(sources[i]), i))
    return [order[k::workers] for k in range(workers)]


def _worker_device(device: str, rank: int) -> str:
    import torch

    if device in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{rank % torch.cuda.device_count()}"
    return device


def _worker_main(rank, jobs, settings: DenoiseSettings, results) -> None:
    """Body of one worker process: load the model once, process its files in order."""
    import torch

    from .inference import resolve_device
    from .weights import load_model

    if settings.threads:
        torch.set_num_threads(settings.threads)
    settings = dataclasses.replace(settings, device=_worker_device(settings.device, rank))
    pid = os.getpid()
    model = None
    for source, target in jobs:
        error = None
        found: tuple[str, ...] = ()
        try:
            if model is None and settings.method == "ras2s":
                model = load_model(
                    settings.weights,
                    resolve_device(settings.device),
                    download=settings.download,
                    precision=settings.precision,
                )
            found = denoise_file(Path(source), Path(target), settings, model)
        except Ras2sError as err:
            error = str(err)
        except Exception as err:  # a bug: report it and go on with the other files
            error = f"internal error: {type(err).__name__}: {err} (rerun with --debug)"
        results.put(FileResult(Path(source), Path(target), found, error, rank, pid))
    results.put(("done", rank))


def denoise_in_workers(
    sources: list[Path],
    targets: list[Path],
    settings: DenoiseSettings,
    workers: int,
) -> Iterator[FileResult]:
    """Denoise ``sources`` into ``targets`` with ``workers`` processes; yield results as they come.

    Worker processes are started with the ``spawn`` method (safe with PyTorch's threads
    and CUDA). A worker that dies without reporting (killed, out of memory) yields an
    error result for each file it had not finished.
    """
    import multiprocessing

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if settings.threads is None:
        per_worker = max(1, (os.cpu_count() or 1) // workers)
        settings = dataclasses.replace(settings, threads=per_worker)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shares = split_between_workers(sources, workers)
    processes = []
    pending: dict[int, set[int]] = {}
    for rank, share in enumerate(shares):
        if not share:
            continue
        jobs = [(str(sources[i]), str(targets[i])) for i in share]
        process = context.Process(
            target=_worker_main, args=(rank, jobs, settings, results), daemon=True
        )
        process.start()
        processes.append((rank, process))
        pending[rank] = set(share)
    index_of = {str(sources[i]): i for i in range(len(sources))}
    try:
        while pending:
            try:
                message = results.get(timeout=1.0)
            except queue_module.Empty:
                for rank, process in processes:
                    if rank in pending and not process.is_alive():
                        yield from _lost(rank, process, pending.pop(rank), sources, targets)
                continue
            if isinstance(message, tuple):  # ("done", rank)
                pending.pop(message[1], None)
                continue
            pending.get(message.worker, set()).discard(index_of[str(message.source)])
            yield message
    finally:
        for _, process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _lost(rank, process, indices, sources, targets) -> Iterator[FileResult]:
    reason = f"worker {rank} stopped unexpectedly (exit code {process.exitcode})"
    for i in sorted(indices):
        yield FileResult(sources[i], targets[i], (), reason, rank, process.pid or 0)


def denoise_serially(
    sources: list[Path],
    targets: list[Path],
    settings: DenoiseSettings,
    model,
    preview: Path | None = None,
) -> Iterator[FileResult]:
    """The one-process path: yield one result per file, in order; bad inputs do not stop it."""
    for source, target in zip(sources, targets, strict=True):
        try:
            found = denoise_file(source, target, settings, model, preview)
            yield FileResult(source, target, found, None, 0, os.getpid())
        except Ras2sError as err:
            yield FileResult(source, target, (), str(err), 0, os.getpid())
