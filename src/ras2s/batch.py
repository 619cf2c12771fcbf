"""Denoise many files: one at a time, or spread over several worker processes.

``ras2s denoise --workers N`` uses :func:`denoise_in_workers`: the files are split between
``N`` processes before any work starts (largest first, dealt round-robin), each process
loads the model once and writes each of its files atomically, so every output is written
exactly once, by one process. With ``--device cuda`` worker ``k`` uses GPU ``k`` modulo
the number of GPUs; on CPU the cores are shared out (``threads`` per worker).

:func:`plan_targets` decides every output before any work and refuses what could lose
data: two inputs with one output, an output on (or in) an input, anything ``--force``
may not replace (see :func:`ras2s.io.check_replaceable`).

Signals: workers start with SIGINT ignored (a Ctrl-C reaches the whole process group;
the parent alone decides) and turn SIGTERM into :class:`~ras2s.errors.Terminated`, so an
interrupted write removes its temporary file and the worker exits without a traceback.
On Ctrl-C or SIGTERM the parent terminates every worker and waits for it. A worker
whose parent has gone (killed) stops at once (Linux: the parent-death signal; else a
watchdog thread), and never writes an output after that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import queue as queue_module
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError, OutputError, Ras2sError, sigterm_raises


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
    band_window: int | str | None = "auto"
    nan_policy: str = "error"
    normalise: str = "auto"  # the weights card's choice (percentile for ours), else minmax
    sigma: float | None = None
    nodata: float | None = None  # None: the file's GDAL_NODATA / ENVI data ignore value
    skip_bands: str | None = None  # "0-4,103-112"; added to the ENVI bbl = 0 bands
    force: bool = False
    progress: bool | dict[str, Any] = False  # a dict: tqdm options (ras2s.progress)
    strict: bool = False  # a diverging network is an error, not retried in safer settings
    cog: bool = False  # TIFF outputs as Cloud-Optimized GeoTIFFs
    tile_workers: int | str = 1  # processes running one cube's tiles (CLI: "auto")


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
    Beside ``target`` a JSON sidecar (:func:`sidecar_path`) records how it was made: the
    input, the method and weights, the normalisation and its range, the band window,
    and any fallback taken after a divergence (:func:`provenance`).
    Raises :class:`~ras2s.errors.Ras2sError` for bad input; nothing is written then.
    """
    from .inference import (
        denoise,
        denoise_classical,
        denoise_masked,
        parse_band_list,
    )
    from .io import (
        FolderLock,
        bad_bands,
        check_output,
        check_replaceable,
        cube_nodata,
        read_cube,
        write_atomically,
        write_cube,
        write_text_atomically,
    )

    if settings.method == "ras2s":
        from .io import open_cube

        with open_cube(
            source, key=settings.key, layout=settings.layout, max_bytes=settings.max_memory
        ) as opened:
            if streams(opened.shape, opened.dtype, settings.max_memory):
                return _denoise_streamed(opened, source, target, settings, model, preview)
            cube = opened.cube_file(opened.read())
    else:
        cube = read_cube(source, key=settings.key, layout=settings.layout)
    check_output(target, cube.data.dtype, force=settings.force)  # before the network runs
    check_replaceable(sidecar_path(target), force=settings.force, inputs=[source])
    done: dict = {}
    nodata = settings.nodata if settings.nodata is not None else cube_nodata(cube)
    skip = sorted(
        set(bad_bands(cube)) | set(parse_band_list(settings.skip_bands, cube.data.shape[0]))
    )
    with warnings.catch_warnings(record=True) as caught, _naming(source):
        warnings.simplefilter("always")
        if settings.method == "ras2s":
            result = denoise(cube.data, **_network_options(settings, model, nodata, skip, done))
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
    messages = tuple(str(w.message) for w in caught)
    record = provenance(cube, target, settings, model, nodata, skip, done, messages)
    # cube and sidecar as a pair: two runs with --force on one target cannot leave the
    # cube of one beside the sidecar of the other
    with FolderLock(Path(target).parent, what="ras2s denoise"):
        write_cube(target, result, like=cube, force=settings.force, cog=settings.cog)
        write_text_atomically(
            sidecar_path(target), json.dumps(record, indent=1) + "\n", force=settings.force
        )
    if preview is not None:
        from .report import write_preview

        write_atomically(preview, functools.partial(write_preview, cube.data, result))
    return messages


def _network_options(
    settings: DenoiseSettings, model, nodata: float | None, skip: list[int], done: dict
) -> dict:
    """The keyword arguments of :func:`ras2s.denoise` / ``denoise_windows`` for a file."""
    from .inference import resolve_device

    return {
        "nodata": nodata,
        "skip_bands": skip or None,
        "model": model,
        "tile": settings.tile,
        "overlap": settings.overlap,
        "max_memory": settings.max_memory,
        "device": resolve_device(settings.device),
        "progress": settings.progress,
        "nan_policy": settings.nan_policy,
        "normalise": settings.normalise,
        "band_window": settings.band_window,
        "strict": settings.strict,
        "report": done,
        "tile_workers": settings.tile_workers,
    }


def streams(shape: tuple[int, int, int], dtype, max_memory: int) -> bool:
    """Whether ``ras2s denoise`` streams a cube instead of reading it into memory.

    In memory, the cube, the float32 network output and the cast result are held at
    once (:func:`ras2s.inference.fixed_bytes`); when they would take more than half of
    ``max_memory`` the cube is streamed: read, denoised and written window by window,
    the network output in a scratch file (:func:`ras2s.inference.denoise_windows`).
    """
    from .inference import fixed_bytes

    return fixed_bytes(tuple(int(s) for s in shape), dtype) > max_memory // 2


def _denoise_streamed(
    opened, source: Path, target: Path, settings: DenoiseSettings, model, preview: Path | None
) -> tuple[str, ...]:
    """:func:`denoise_file` for a cube larger than its budget: window by window.

    The output is created windowed beside its final name (:func:`ras2s.io.create_cube`),
    filled strip by strip and published with its sidecar under the folder lock; an
    error or an interruption removes it (and the scratch file is never visible).
    """
    from .inference import denoise_windows, parse_band_list
    from .io import (
        FolderLock,
        bad_bands,
        check_output,
        check_replaceable,
        create_cube,
        cube_nodata,
        write_atomically,
        write_text_atomically,
    )

    meta = opened.cube_file(None)
    check_output(target, opened.dtype, force=settings.force)
    check_replaceable(sidecar_path(target), force=settings.force, inputs=[source])
    done: dict = {}
    nodata = settings.nodata if settings.nodata is not None else cube_nodata(meta)
    bands = opened.shape[0]
    skip = sorted(set(bad_bands(meta)) | set(parse_band_list(settings.skip_bands, bands)))
    with (
        create_cube(
            target,
            opened.shape,
            opened.dtype,
            like=meta,
            force=settings.force,
            cog=settings.cog,
        ) as sink,
        warnings.catch_warnings(record=True) as caught,
        _naming(source),
    ):
        warnings.simplefilter("always")

        thumbnail = None if preview is None else PreviewStrips(opened)

        def write(rows: slice, block) -> None:
            sink.write((rows, slice(None)), block)
            if thumbnail is not None:
                thumbnail.add(rows, block)

        denoise_windows(
            opened,
            write,
            **_network_options(settings, model, nodata, skip, done),
            stream=True,
            scratch_dir=Path(target).parent,
        )
        messages = tuple(str(w.message) for w in caught)
        record = provenance(opened, target, settings, model, nodata, skip, done, messages)
        with FolderLock(Path(target).parent, what="ras2s denoise"):
            sink.commit()
            write_text_atomically(
                sidecar_path(target), json.dumps(record, indent=1) + "\n", force=settings.force
            )
    if thumbnail is not None:
        write_atomically(preview, thumbnail.write)
    return messages


class PreviewStrips:
    """A streamed run's ``--preview``, gathered from the output strips as written.

    Three bands of every ``step``-th pixel of the output, and the same pixels of the
    input; ``step`` makes the longer side at most :data:`PREVIEW_SIDE` pixels; only
    ``3 x (H / step) x (W / step)`` values of each cube are held.
    """

    def __init__(self, source) -> None:
        from .report.figures import check_rgb

        bands, height, width = source.shape
        self.source = source
        self.bands = check_rgb(None, bands)
        self.step = max(1, -(-max(height, width) // PREVIEW_SIDE))
        self.before: list = []
        self.after: list = []

    def add(self, rows: slice, block) -> None:
        """Keep the preview's pixels of an output strip ``(bands, h, W)`` at ``rows``."""
        import numpy as np

        first = rows.start + (-rows.start) % self.step  # the first kept row in the strip
        if first >= rows.stop:
            return
        local = slice(first - rows.start, rows.stop - rows.start, self.step)
        cols = slice(None, None, self.step)
        self.after.append(block[list(self.bands), local, cols])
        kept = slice(first, rows.stop, self.step)
        self.before.append(np.stack([self.source[b, kept, cols] for b in self.bands]))

    def write(self, path: Path) -> None:
        """Write the before/after PNG of the gathered pixels to ``path``."""
        import numpy as np

        from .report import write_preview

        note = f", 1 pixel in {self.step} per side" if self.step > 1 else ""
        before, after = np.concatenate(self.before, 1), np.concatenate(self.after, 1)
        write_preview(before, after, path, (0, 1, 2), labels=self.bands, note=note)


#: The longer side of a streamed cube's ``--preview``, in pixels (at most).
PREVIEW_SIDE = 1024


def sidecar_path(target: Path) -> Path:
    """Where the record of how ``target`` was made is written: ``<target>.json``."""
    target = Path(target)
    return target.with_name(target.name + ".json")


def provenance(
    cube,
    target: Path,
    settings: DenoiseSettings,
    model,
    nodata: float | None,
    skip: list[int],
    done: dict,
    messages: tuple[str, ...],
) -> dict:
    """The sidecar's record of one denoised file (JSON-ready).

    ``done`` is what :func:`ras2s.denoise` reported (``report=``): the normalisation and
    the range mapped to [0, 1], the band window and the fallback list (empty when the
    first setting held; each entry the setting that diverged and the error).
    """
    from . import __version__
    from .io import sha256_file

    data = getattr(cube, "data", None)  # a CubeFile, or an open CubeSource (streamed)
    shape, dtype = (data.shape, data.dtype) if data is not None else (cube.shape, cube.dtype)

    record: dict = {
        "input": {
            "path": str(Path(cube.path).resolve()),
            "format": cube.format,
            "key": cube.key,
            "layout": cube.layout,
            "shape": list(shape),
            "dtype": str(dtype),
        },
        "output": str(target),
        "method": settings.method,
    }
    if settings.method == "ras2s" and model is not None:
        card = getattr(model, "card", None) or {}
        weights_path = card.get("path")
        record["weights"] = {
            "name": str(settings.weights),
            "path": weights_path,
            "sha256": sha256_file(weights_path) if weights_path else None,
            "precision": getattr(model, "precision", None),
        }
        record.update(
            {
                "normalise": done.get("normalise"),
                "range": done.get("range"),
                "first_pass_range": done.get("first_pass_range"),
                "band_window": done.get("band_window"),
                "strict": settings.strict,
                "fallback": done.get("fallback", []),
                "streamed": done.get("streamed", False),
                "tile": done.get("tile"),
                "overlap": done.get("overlap"),
                "tile_workers": done.get("tile_workers"),
                "tiles_on": done.get("tiles_on", "this process"),
            }
        )
    else:
        from .inference import classical_normalise

        record.update(
            {"normalise": classical_normalise(settings.normalise), "sigma": settings.sigma}
        )
    record.update(
        {
            "nodata": None if nodata is None else repr(float(nodata)),
            "skip_bands": skip,
            "warnings": list(messages),
            "ras2s_version": __version__,
        }
    )
    return record


@contextlib.contextmanager
def _naming(source: Path) -> Iterator[None]:
    """Prefix a ras2s error about the array (not the file) with the file's name."""
    try:
        yield
    except InputError as err:
        if str(source) in str(err):
            raise
        raise type(err)(f"{source}: {err}") from err


def plan_targets(
    sources: list[Path],
    output: str | os.PathLike | None = None,
    *,
    suffix: str = "_denoised",
    preview: str | os.PathLike | None = None,
    force: bool = False,
) -> list[Path]:
    """Where each source is written; refuses, before any work, what would lose data.

    One source: ``output`` is the output file (or a folder to write into); several:
    ``output`` must be an existing folder. Without ``output`` each goes beside its
    source as ``<stem><suffix><ext>``. Refused, ``force`` or not: two sources with one
    output, an output (or ``preview``) on an input or inside an input PNG-band folder,
    a symbolic link, a device, or a folder holding more than band PNGs; without
    ``force``, any existing output or output sidecar (``<output>.json``).

    Raises
    ------
    OutputError
        Naming the path and the reason.
    """
    from .io import (
        check_input,
        check_output,
        check_replaceable,
        check_suffix,
        default_output_path,
    )

    check_suffix(suffix)
    for source in sources:  # a bad input is named before anything about its output
        check_input(source)
    many = len(sources) > 1
    if many and output is not None and not Path(output).is_dir():
        raise OutputError(f"{output}: with several inputs, -o must be an existing folder")
    targets = []
    for source in sources:
        default = default_output_path(source, suffix=suffix)
        out = None if output is None else Path(output)
        into = out is not None and (many or (out.is_dir() and not out.is_symlink()))
        targets.append(default if out is None else out / default.name if into else out)
    _refuse_shared_targets(sources, targets)
    for target in targets:
        check_output(target, force=force, inputs=sources)
        check_replaceable(sidecar_path(target), force=force, inputs=sources)
    if preview is not None:
        if many:
            raise OutputError("--preview needs a single input")
        if not str(preview).lower().endswith(".png"):
            raise OutputError(f"{preview}: --preview writes a PNG; give a .png name")
        check_replaceable(preview, force=force, inputs=[*sources, *targets])
    return targets


def _refuse_shared_targets(sources: list[Path], targets: list[Path]) -> None:
    from .io import output_files

    seen: dict[str, Path] = {}
    for source, target in zip(sources, targets, strict=True):
        for path in output_files(target):
            real = os.path.realpath(path)
            if real in seen:
                what = (
                    "is given twice"
                    if os.path.realpath(seen[real]) == os.path.realpath(source)
                    else f"and {seen[real]} would both be written to {target}"
                )
                raise OutputError(
                    f"{source} {what}; nothing was done (give each input its own output)"
                )
            seen[real] = source


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


def _watch_parent(parent: int) -> None:
    """Stop this worker (SIGTERM to itself) as soon as its parent process has gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):  # PR_SET_PDEATHSIG: the kernel tells us at once
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="ras2s-parent-watch", daemon=True).start()


def _worker_main(rank, jobs, settings: DenoiseSettings, results, parent: int = 0) -> None:
    """Body of one worker process: stop quietly on SIGTERM or when the parent has gone."""
    try:
        with sigterm_raises():
            if parent:
                _watch_parent(parent)
            _worker_jobs(rank, jobs, settings, results)
    except KeyboardInterrupt:  # Terminated: temporary files are already removed
        results.cancel_join_thread()  # never block at exit on results nobody will read
        sys.exit(143)


def _worker_jobs(rank, jobs, settings: DenoiseSettings, results) -> None:
    """Load the model once, process this worker's files in order."""
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
            target=_worker_main, args=(rank, jobs, settings, results, os.getpid()), daemon=True
        )
        with _sigint_ignored():  # inherited: the child ignores Ctrl-C, the parent stops it
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
        _stop(processes)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(processes, grace: float = 10.0) -> None:
    """Terminate every live worker (SIGTERM: it cleans up), wait, kill what lingers."""
    for _, process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace
    for _, process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
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
