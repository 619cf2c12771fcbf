"""Denoise whole cubes of any size: normalise, tile, run the network, blend, map back.

:func:`denoise` is the one entry point. Memory is bounded by ``max_memory``: the input
cube, the output and the network's working memory for one tile together are kept under
it (plus PyTorch's own runtime, about 0.3 GiB), by choosing the tile size.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .cube import check_range, denormalise
from .errors import DivergenceError, FallbackWarning, InputError
from .tiling import balanced_tile, run_band_windows, run_tiled, tile_for_budget

if TYPE_CHECKING:
    from .parallel import TileRunner

GiB = 1 << 30
DEFAULT_MAX_MEMORY = 2 * GiB
DEFAULT_OVERLAP = 32
DEFAULT_BAND_OVERLAP = 8
NAN_POLICIES = ("error", "fill")
NORMALISATIONS = ("clean", "minmax", "percentile", "none")
#: Bands per network run when a whole-cube run diverged: the band count of the paper's
#: training data and the shortest band crop of ours.
RETRY_BAND_WINDOW = 31
#: ``normalise="clean"``: a second pass runs when the first pass's output reaches more
#: than this fraction of the estimated span beyond it, at these percentiles.
REFINE_MARGIN = 0.05
REFINE_PERCENTILES = (0.01, 99.99)
PERCENTILES = (0.5, 99.5)
_PERCENTILE_SAMPLE = 4_000_000

#: Largest automatic tile side for images larger than WHOLE_IMAGE_UP_TO: the network's
#: time per output voxel (32-pixel overlap, 31 bands, fp32, 1 thread, 2-core AMD EPYC) is
#: 1.34 / 1.03 / 1.00 / 1.10 / 1.15 at sides 128 / 192 / 256 / 384 / 512 (larger tiles
#: fall out of cache; smaller ones compute more overlap): benchmarks/scale.py tiles.
THROUGHPUT_TILE = 256
#: Images up to this side run as one tile when the budget allows (exact, no overlap).
WHOLE_IMAGE_UP_TO = 384

# Network working memory, in bytes, of one tile: PER_PIXEL_BAND * bands * pixels +
# PER_PIXEL * pixels (float32; half for bf16). Measured as peak RSS growth of RAS2S(C=14),
# channels-last, under torch.inference_mode on CPU with glibc's default allocator
# (benchmarks/memory_calibration.py, fp32: 5319 B/px at 8 bands, 10417-11708 at 31, 15855
# at 62, 42164 at 191; bf16: 2881, 5064-6340, 8203, 21835); this fit over-estimates every
# measured case (by 1.03x to 1.34x).
PER_PIXEL_BAND_BYTES = 240
PER_PIXEL_BYTES = 5600


def network_bytes(
    bands: int,
    pixels: int,
    channels: int = 14,
    precision: str = "fp32",
    band_window: int | None = None,
) -> int:
    """Estimated working memory (bytes) of RAS2S on one ``(bands, pixels)`` tile.

    ``precision`` is the network's resolved precision: bfloat16 activations take half
    the bytes of float32 ones. With a ``band_window`` smaller than ``bands`` the network
    sees ``band_window`` bands at a time, and the tile's float64 accumulator of the
    blended windows (:func:`~ras2s.tiling.run_band_windows`: 8 bytes per band and pixel)
    is added.
    """
    if band_window is not None and band_window < bands:
        blend = 8 * bands * pixels
        return network_bytes(band_window, pixels, channels, precision) + blend
    scale = channels / 14 * (0.5 if precision == "bf16" else 1.0)
    return int(scale * pixels * (PER_PIXEL_BAND_BYTES * bands + PER_PIXEL_BYTES))


def resolve_band_window(band_window: int | str | None, model: torch.nn.Module) -> int | None:
    """Bands per network run: ``None`` for the whole cube at once.

    ``"auto"`` takes the weights card's ``inference.band_window``: weights trained only
    on short band sequences carry the length they were trained on (``ras2s export``
    writes the patch store's band count), because their recurrence can drift on much
    longer cubes; weights measured stable on long cubes (the shipped default since run 2's
    step 8,200) carry ``null``, and the authors' checkpoint carries nothing: both run the
    whole cube. ``None`` or ``0`` runs the whole cube; an integer must be at least
    ``2 * reach + 1`` (3 for the released architecture).
    """
    if band_window == "auto":
        card = getattr(model, "card", None) or {}
        band_window = (card.get("inference") or {}).get("band_window")
    if band_window is None or band_window == 0:
        return None
    if isinstance(band_window, bool) or not isinstance(band_window, int):
        raise InputError(f"band_window must be 'auto', None or an integer, got {band_window!r}")
    reach = getattr(getattr(model, "config", None), "reach", 1)
    if band_window < 2 * reach + 1:
        raise InputError(
            f"band_window must be at least {2 * reach + 1} bands (the attention window), "
            f"got {band_window}"
        )
    return band_window


def resolve_normalise(normalise: str, model: torch.nn.Module | None = None) -> str:
    """The normalisation to apply: one of :data:`NORMALISATIONS`.

    ``"auto"`` takes the weights card's ``inference.normalise``, else ``clean`` (the
    estimated range of the clean signal, :func:`ras2s.ranges.clean_range`; for the
    authors' checkpoint, which carries no card, it measured above ``minmax`` on all 18
    held-out cube/noise pairs: docs/evaluation.md, "Normalisation").
    """
    if normalise == "auto":
        card = getattr(model, "card", None) or {}
        normalise = (card.get("inference") or {}).get("normalise", "clean")
    if normalise not in NORMALISATIONS:
        raise InputError(
            f"normalise must be 'auto' or one of {', '.join(NORMALISATIONS)}, got {normalise!r}"
        )
    return normalise


def band_overlap(window: int) -> int:
    """Bands shared by neighbouring band windows: 8, at most a quarter of the window."""
    return min(DEFAULT_BAND_OVERLAP, window // 4)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch understands it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device {str(device)!r} is not supported; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InputError(
            f"device {str(device)!r} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def _as_bands_first(cube: np.ndarray, layout: str) -> np.ndarray:
    layout = layout.upper()
    if layout == "BHW":
        return cube
    if layout == "HWB":
        return cube.transpose(2, 0, 1)
    raise InputError(f"layout must be 'BHW' or 'HWB', got {layout!r}")


def _check_cube(cube: np.ndarray) -> None:
    if cube.ndim != 3:
        raise InputError(f"a cube must be 3-D (bands, H, W); got shape {cube.shape}")
    if 0 in cube.shape:
        raise InputError(f"the cube is empty: shape {cube.shape}")
    if cube.dtype.kind not in "iuf":  # by kind: numpy files timedelta64 under integers
        raise InputError(f"the cube must hold real numbers; got dtype {cube.dtype}")


def _value_range(
    cube: np.ndarray, normalise: str, nan_policy: str, nodata: float | None = None
) -> tuple[float, float, np.ndarray | None]:
    """``(lo, hi, fills)``: the values of an in-memory cube mapped to 0 and 1.

    ``fills`` holds each band's replacement for NaN/Inf (and ``nodata``) values, or None
    when there are none. Computed as :func:`denoise_windows` computes it (the scan and
    range passes of :mod:`ras2s.pipeline`, over the valid box when ``nodata`` is set):

    ``minmax``: the cube's global minimum and maximum (the paper's convention).
    ``percentile``: the 0.5th and 99.5th percentiles of the values (from an evenly
    strided sample of at most 4 million values), so that a few outliers -- hot pixels,
    impulse noise, dead lines, or the tails of strong noise -- do not squeeze the signal
    into a fraction of [0, 1]. Values outside stay outside (no clipping).
    ``clean``: the estimated minimum and maximum of the clean signal
    (:func:`ras2s.ranges.clean_range`: those of a median-filtered, smoothed copy), so
    that neither noise nor a few bright pixels set the scale.
    ``none``: the cube is already normalised (0 and 1 are used as they are).
    """
    from .pipeline import Prepared, scan_missing, scan_range

    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    how = resolve_normalise(normalise)
    bands, height, _ = cube.shape
    masks = scan_missing(cube, range(bands), nodata=nodata, nan_policy=nan_policy, rows=height)
    found = scan_range(
        Prepared(cube, masks),
        clean=how == "clean",
        sample=how == "percentile",
        rows=height,
        threads=_filter_threads(),
    )
    lo, hi = _span(how, found)
    return lo, hi, masks.fills


def _filter_threads() -> int:
    """Threads for the clean-range filters: PyTorch's threads, at most the CPUs we have."""
    from .parallel import cpu_workers

    return max(1, min(torch.get_num_threads(), cpu_workers()))


def _normaliser(
    lo: float, hi: float, fills: np.ndarray | None
) -> Callable[[np.ndarray], np.ndarray]:
    scale = 1.0 / (hi - lo)

    def normalise(tile: np.ndarray) -> np.ndarray:
        out = (tile.astype(np.float64) - lo) * scale
        if fills is not None:
            bad = ~np.isfinite(out)
            if bad.any():
                out[bad] = ((fills - lo) * scale)[np.nonzero(bad)[0]]
        return out.astype(np.float32)

    return normalise


def fixed_bytes(shape: tuple[int, int, int], dtype: np.dtype) -> int:
    """Memory :func:`denoise` holds besides the network, for a ``(bands, H, W)`` cube.

    The input itself, the float32 output, the blend's weight sum (``4 * H * W``) and,
    for a non-float32 input, the output cast back to the input's dtype.
    """
    bands, height, width = shape
    itemsize = np.dtype(dtype).itemsize
    voxels = bands * height * width
    cast = 0 if np.dtype(dtype) == np.float32 else itemsize * voxels
    return voxels * itemsize + 4 * voxels + cast + 4 * height * width


def choose_tile(
    bands: int,
    height: int,
    width: int,
    *,
    max_memory: int,
    fixed_bytes: int,
    channels: int = 14,
    precision: str = "fp32",
    band_window: int | None = None,
) -> int:
    """Largest square tile side whose network memory fits ``max_memory - fixed_bytes``.

    Returns ``max(height, width)`` (one tile, the whole image) when the whole image fits.
    """
    need = network_bytes(bands, height * width, channels, precision, band_window)
    if need + fixed_bytes <= max_memory:
        return max(height, width)
    per_pixel_band = network_bytes(bands, 1, channels, precision, band_window) / bands
    return tile_for_budget(bands, per_pixel_band, max_memory, fixed_bytes=fixed_bytes)


def plan_tiles(
    shape: tuple[int, int, int],
    dtype: np.dtype,
    *,
    max_memory: int = DEFAULT_MAX_MEMORY,
    tile: int | None = None,
    overlap: int | None = None,
    channels: int = 14,
    precision: str = "fp32",
    band_window: int | None = None,
    fixed: int | None = None,
) -> tuple[int | tuple[int, int], int]:
    """The ``(tile, overlap)`` :func:`denoise` uses for a ``(bands, H, W)`` cube.

    ``tile=None`` takes the largest tile that fits ``max_memory`` (at most
    :data:`THROUGHPUT_TILE` on images larger than :data:`WHOLE_IMAGE_UP_TO`) and balances it
    (:func:`~ras2s.tiling.balanced_tile`: the same tile count, each tile shrunk so that
    only the overlap is computed twice), giving ``(tile_h, tile_w)``; a given ``tile`` is
    used as is. ``overlap=None`` is 32 pixels, at most a quarter of the tile; the overlap
    is clipped below the tile and the image. ``precision`` is the network's resolved
    precision (``"fp32"`` or ``"bf16"``, whose activations take half the memory);
    ``band_window`` the bands per network run (:func:`resolve_band_window`); ``fixed``
    the bytes held besides the network (default :func:`fixed_bytes`: the cube in memory;
    a streamed cube holds only the blend's weight sum, ``4 * H * W``).
    """
    bands, height, width = shape
    automatic = tile is None
    if max_memory <= 0:
        raise InputError(f"max_memory must be a positive number of bytes, got {max_memory}")
    if tile is not None and (isinstance(tile, bool) or tile < 1):
        raise InputError(f"tile must be >= 1 pixel, got {tile}")
    if overlap is not None and (isinstance(overlap, bool) or overlap < 0):
        raise InputError(f"overlap must be >= 0 pixels, got {overlap}")
    if automatic:
        tile = choose_tile(
            bands,
            height,
            width,
            max_memory=max_memory,
            fixed_bytes=fixed_bytes(shape, dtype) if fixed is None else fixed,
            channels=channels,
            precision=precision,
            band_window=band_window,
        )
        if max(height, width) > WHOLE_IMAGE_UP_TO:  # a large image: tiles for throughput
            tile = min(tile, THROUGHPUT_TILE)
    if overlap is None:
        overlap = min(DEFAULT_OVERLAP, max(0, tile // 4))
    elif overlap >= tile:  # tiles would advance by <= 0 pixels: refuse, never clip
        raise InputError(
            f"overlap ({overlap}) must be smaller than the tile ({tile}"
            f"{', the largest that fits max_memory' if automatic else ''}); lower the overlap "
            f"or {'raise max_memory' if automatic else 'enlarge the tile'}"
        )
    overlap = min(overlap, max(0, min(tile, height, width) - 1))
    if automatic and overlap < tile:  # as few tiles as the budget allows, no wasted area
        return balanced_tile(height, width, tile, overlap), overlap
    return tile, overlap


def _check_plausible(
    output: tuple[float, float],
    extremes: tuple[float, float],
    mapped: tuple[float, float],
    shape: tuple[int, ...],
) -> None:
    """DivergenceError when the output leaves the input's range by more than 10 spans.

    ``output`` is the network output's ``(min, max)`` in the normalised domain, where
    the input's finite ``extremes`` map to ``(e - lo) / (hi - lo)`` with
    ``mapped = (lo, hi)``. A denoiser stays near its
    input's range; weights whose recurrence diverges on a cube (seen: +-2.5e6 for an
    input in [0, 1]) would otherwise be mapped back and written as if they were data.
    """
    lo, hi = mapped
    in_lo, in_hi = ((e - lo) / (hi - lo) for e in extremes)
    span = max(in_hi - in_lo, 1e-12)
    out_lo, out_hi = (float(v) for v in output)
    if out_lo < in_lo - 10 * span or out_hi > in_hi + 10 * span:
        raise DivergenceError(
            f"the network output spans [{out_lo:.3g}, {out_hi:.3g}] for the cube {shape} "
            f"normalised to [{in_lo:.3g}, {in_hi:.3g}]: the weights diverge on this input",
            f"output [{out_lo:.3g}, {out_hi:.3g}] for input [{in_lo:.3g}, {in_hi:.3g}]",
        )


def _model_precision(model: torch.nn.Module) -> str:
    """``"bf16"`` for a bfloat16 network, else ``"fp32"`` (for the memory model)."""
    dtype = next(model.parameters(), torch.empty(0)).dtype
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def _run_network(
    model: torch.nn.Module, device: torch.device, tile: np.ndarray, band_window: int | None = None
) -> np.ndarray:
    """One normalised ``(bands, h, w)`` float32 tile through ``model``; same shape, float32.

    With a ``band_window`` smaller than ``bands`` the network runs on overlapping windows
    of that many bands, blended (:func:`~ras2s.tiling.run_band_windows`).
    """
    if band_window is not None and band_window < tile.shape[0]:
        run = functools.partial(_run_network, model, device)
        return run_band_windows(run, tile, band_window, band_overlap(band_window))
    with torch.inference_mode():
        x = torch.from_numpy(tile).to(device).unsqueeze(0)
        return model(x)[0].float().cpu().numpy()


def _run_into(
    prepared: Any,
    buffer: Any,
    model: torch.nn.Module,
    device: torch.device,
    transform: Callable[[np.ndarray], np.ndarray],
    progress: bool | dict[str, Any],
    *,
    tile: int | tuple[int, int],
    overlap: int,
    band_window: int | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    mapper: Callable | None = None,
) -> None:
    """Run ``model`` over ``prepared`` ``(bands, H, W)`` tile by tile into ``buffer``.

    Each tile is normalised by ``transform``; ``buffer`` (a float32 array or a
    :class:`~ras2s.pipeline.Scratch` of the same shape) receives the blended network
    output, still in the normalised units.
    """
    if progress:
        extra = progress if isinstance(progress, dict) else {}
        progress = {"desc": "denoise", "unit": "tile", "leave": False, **extra}
    run_tiled(
        prepared,
        functools.partial(_run_network, model, device, band_window=band_window),
        out=buffer,
        tile=tile,
        overlap=overlap,
        transform=transform,
        progress=progress,
        on_tile=on_tile,
        mapper=mapper,
    )


#: Tile workers only when each one's share of the budget allows tiles of at least this
#: side (smaller tiles cost more per voxel than the workers gain: benchmarks/scale.py).
MIN_WORKER_TILE = 192

#: Resident memory of one tile worker's Python and PyTorch runtime (measured: about
#: 0.3 GiB after ``import torch``; rounded up).
WORKER_RUNTIME_BYTES = 400 << 20


def _tile_workers(
    asked: int | str,
    device: torch.device,
    tiles: int | tuple[int, int],
    overlap: int,
    shape: tuple[int, int, int],
    max_memory: int,
) -> int:
    """How many :class:`~ras2s.parallel.TilePool` workers to use (1: none)."""
    if asked == "auto":
        from .parallel import cpu_workers

        threads = min(torch.get_num_threads(), cpu_workers())
        if device.type != "cpu" or threads < 2:
            return 1
        tile_h, tile_w = (tiles, tiles) if isinstance(tiles, int) else tiles
        step_h, step_w = max(1, tile_h - overlap), max(1, tile_w - overlap)
        count = math.ceil(max(1, shape[1] - overlap) / step_h) * math.ceil(
            max(1, shape[2] - overlap) / step_w
        )
        enough_memory = max_memory >= threads * (2 * WORKER_RUNTIME_BYTES)
        return threads if count >= 2 * threads and enough_memory else 1
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        raise InputError(f"tile_workers must be 'auto' or an integer >= 1, got {asked!r}")
    if asked > 1 and device.type != "cpu":
        raise InputError("tile_workers > 1 runs on the CPU only; use one process per GPU")
    return asked


#: ``denoise_windows``'s passes over the cube read strips of about this share of the
#: memory budget (each strip's raw block plus its float64 work copies).
STRIP_SHARE = 8


def strip_plan(
    shape: tuple[int, int, int], dtype: np.dtype, max_memory: int
) -> tuple[int, int, int]:
    """Rows per strip of the scan, range and write passes over a streamed cube.

    Each strip costs about ``max_memory / STRIP_SHARE``: the scan holds the raw strip
    and its masks; the range pass the strip read and filled, plus per filter thread
    about 7 float64 planes of one band (three median-filtered bands, their median, the
    box mean, temporaries); the write pass the network output and the mapped result.
    """
    from .pipeline import strip_rows

    bands = shape[0]
    itemsize = np.dtype(dtype).itemsize
    share = max(1, max_memory // STRIP_SHARE)
    filter_bytes = _filter_threads() * 7 * 8 / bands
    return (
        strip_rows(shape, itemsize + 2, share),
        strip_rows(shape, 2 * itemsize + 2 + filter_bytes, share),
        strip_rows(shape, itemsize * 2 + 16, share),
    )


def denoise(
    cube: np.ndarray | torch.Tensor,
    weights: str | os.PathLike = "default",
    *,
    layout: str = "BHW",
    tile: int | None = None,
    overlap: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    device: str | torch.device = "cpu",
    progress: bool | dict[str, Any] = False,
    nan_policy: str = "error",
    normalise: str = "auto",
    model: torch.nn.Module | None = None,
    nodata: float | None = None,
    skip_bands: Sequence[int] | None = None,
    precision: str = "auto",
    band_window: int | str | None = "auto",
    strict: bool = False,
    report: dict[str, Any] | None = None,
    tile_workers: int | str | TileRunner = 1,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray | torch.Tensor:
    """Denoise a hyperspectral cube with RAS2S.

    Parameters
    ----------
    cube:
        3-D array, ``(bands, H, W)`` for ``layout="BHW"`` or ``(H, W, bands)`` for
        ``"HWB"``; any real dtype and value range. Not modified. A dask array or an
        ``xarray.DataArray`` gives the same type back, lazily for dask (:mod:`ras2s.lazy`).
    weights:
        ``"default"``, ``"official"`` or a checkpoint path (ignored when ``model`` is given).
    layout:
        ``"BHW"`` (bands first) or ``"HWB"`` (bands last).
    tile, overlap:
        Tile side and overlap in pixels. ``tile=None`` derives the largest tile that fits
        ``max_memory`` (the whole image when it fits, which is exact); ``overlap=None``
        uses 32 pixels (less for tiny tiles).
    max_memory:
        Bytes for the input, the output and the network's working memory of one tile
        together (default 2 GiB).
    device:
        ``"cpu"``, ``"cuda"``, ``"auto"`` or a torch device.
    progress:
        Show a progress bar over tiles (a dict is passed to tqdm).
    on_tile:
        Called as ``on_tile(done, total)`` (tiles) before each pass of the network over
        the cube and after each tile (:func:`ras2s.tiling.run_tiled`); an exception it
        raises stops the work and propagates (how the napari widget cancels).
    nan_policy:
        ``"error"`` (default) rejects NaN/Inf; ``"fill"`` replaces them by their band's
        mean before denoising (the output holds the denoised values there).
    normalise:
        How values are mapped to the network's range: ``"auto"`` (default: what the
        weights' card asks for, else ``"clean"``; the shipped weights and the authors'
        checkpoint both get ``"clean"``), ``"clean"`` (the estimated minimum and maximum
        of the clean signal to 0 and 1, :func:`ras2s.ranges.clean_range`: robust to
        Gaussian noise, impulses, stripes and dead lines; when the denoised output then
        reaches more than 5 % beyond that range -- bright or dark details smaller than
        the estimate's filters -- the cube is denoised a second time with the range
        widened to the output's 0.01st/99.99th percentiles), ``"minmax"`` (the whole cube's
        minimum and maximum, the paper's convention for clean data), ``"percentile"``
        (the 0.5th and 99.5th percentiles), or ``"none"`` (the cube is already in the
        network's range, e.g. a clean cube normalised to [0, 1] plus synthetic noise, as
        in the paper's test protocol). Values outside the range stay outside.
    model:
        A loaded network (from :func:`ras2s.load_model`) to reuse across calls.
    nodata:
        Value marking missing pixels (e.g. -9999; NaN allowed). Those values are left
        out of the normalisation, filled with their band's mean of valid values for the
        network, and returned exactly as they were; the network sees only the bounding
        box of the pixels valid in some band (a GeoTIFF's collar is neither computed nor
        seen), and a valid value denoised onto the nodata value is moved off it
        (:func:`ras2s.nodata.keep_off_nodata`).
    skip_bands:
        0-based indices of bad bands: returned unchanged and not fed to the network.
    precision:
        ``"auto"`` (default: bfloat16 where the device computes it natively, else
        float32), ``"fp32"`` or ``"bf16"`` (see :mod:`ras2s.precision`); used when the
        weights are loaded here. A given ``model`` runs in its own precision. bfloat16
        halves the network's working memory, so ``max_memory`` allows larger tiles.
    band_window:
        Bands per network run. ``"auto"`` (default): what the weights' card asks for
        (the shipped weights and the authors' checkpoint: the whole cube); ``None`` or
        ``0``: the whole cube; an integer ``N``: cubes of more than ``N`` bands are
        denoised in windows of ``N`` consecutive bands that overlap by
        ``min(8, N // 4)`` bands and are blended (raised-cosine ramps).
    strict:
        ``False`` (default): when the network diverges (NaN/Inf, or an output more than
        10 input spans out of range), denoise again in windows of
        :data:`RETRY_BAND_WINDOW` bands, then with ``"minmax"`` normalisation in such
        windows, and say so in a :class:`~ras2s.errors.FallbackWarning`; ``True``: a
        divergence is a :class:`~ras2s.errors.DivergenceError` at once.
    report:
        Optional dict, filled with what was done: ``normalise`` (the normalisation
        used), ``range`` (the ``[lo, hi]`` mapped to 0 and 1), ``first_pass_range``
        (``"clean"``: the estimate a second pass widened, else ``None``),
        ``band_window`` (``None``: whole cube), ``fallback`` (a list of the settings
        that diverged, each with its ``error``; empty when the first setting held),
        ``tile`` and ``overlap`` (the tile plan) and ``streamed`` (False here).
    tile_workers:
        ``1`` (default): tiles run in this process, on PyTorch's threads. ``N`` or
        ``"auto"``: on ``N`` (or as many as PyTorch has threads) single-threaded worker
        processes at once (:func:`denoise_windows`; 1.19x the throughput on 2 cores).
        The workers are started with ``spawn``, which imports the caller's main module:
        a script must then guard its work with ``if __name__ == "__main__":``.
        ``ras2s denoise`` uses ``"auto"``. A
        :class:`ras2s.distributed.ClusterTiles` runs the tiles on a dask cluster's
        workers instead (the same tiles, blended here in the same order).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, shape, layout and dtype as ``cube``. The cube is normalised as a whole
        (``normalise``), denoised, and mapped back to its range; integer
        outputs are rounded and clipped to the dtype. A constant cube is returned
        unchanged (with a warning).

    Raises
    ------
    DivergenceError
        The network diverged in every setting tried (``strict``: in the first).

    Notes
    -----
    This runs :func:`denoise_windows`, the pipeline ``ras2s denoise`` runs on files
    larger than their memory budget, with the cube and the result in memory.

    Examples
    --------
    >>> import numpy as np, ras2s
    >>> noisy = np.random.default_rng(0).random((31, 64, 64), dtype=np.float32)
    >>> clean = ras2s.denoise(noisy, weights="official")  # doctest: +SKIP
    """
    from . import lazy

    if lazy.is_lazy(cube):  # a dask array or xarray.DataArray: the same type back, lazily
        return lazy.denoise(**{name: value for name, value in locals().items() if name != "lazy"})
    as_torch = isinstance(cube, torch.Tensor)
    array = cube.detach().cpu().numpy() if as_torch else np.asarray(cube)
    _check_cube(array)
    data = _as_bands_first(array, layout)
    result = np.empty(array.shape, array.dtype)
    target = _as_bands_first(result, layout)

    def write(rows: slice, block: np.ndarray) -> None:
        target[:, rows, :] = block

    denoise_windows(
        data,
        write,
        weights=weights,
        tile=tile,
        overlap=overlap,
        max_memory=max_memory,
        device=device,
        progress=progress,
        nan_policy=nan_policy,
        normalise=normalise,
        model=model,
        nodata=nodata,
        skip_bands=skip_bands,
        precision=precision,
        band_window=band_window,
        strict=strict,
        report=report,
        buffer=target if array.dtype == np.float32 else None,
        on_tile=on_tile,
        tile_workers=tile_workers,
    )
    return torch.from_numpy(result) if as_torch else result


def denoise_windows(
    source: Any,
    write: Callable[[slice, np.ndarray], None],
    weights: str | os.PathLike = "default",
    *,
    tile: int | None = None,
    overlap: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    device: str | torch.device = "cpu",
    progress: bool | dict[str, Any] = False,
    nan_policy: str = "error",
    normalise: str = "auto",
    model: torch.nn.Module | None = None,
    nodata: float | None = None,
    skip_bands: Sequence[int] | None = None,
    precision: str = "auto",
    band_window: int | str | None = "auto",
    strict: bool = False,
    report: dict[str, Any] | None = None,
    buffer: np.ndarray | None = None,
    stream: bool = False,
    scratch_dir: str | os.PathLike | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    tile_workers: int | str | TileRunner = 1,
) -> None:
    """Denoise ``source`` window by window, handing the result to ``write`` in row strips.

    The pipeline behind :func:`denoise` (in memory) and ``ras2s denoise`` on files
    larger than ``max_memory`` (streamed); the passes are described in
    :mod:`ras2s.pipeline`. The keyword arguments are :func:`denoise`'s.

    Parameters
    ----------
    source:
        ``(bands, H, W)`` read through ``source[(bands, rows, cols)]`` with three slices:
        a numpy array (or a bands-first view of one), a memmap, an h5py dataset or a
        :class:`ras2s.io.CubeSource`; any real dtype. Never modified.
    write:
        ``write(rows, block)`` receives the output, ``rows`` a slice of the image rows
        and ``block`` ``(bands, h, W)`` in the source's dtype, once per strip, top to
        bottom, after every check passed (a diverging run writes nothing).
    buffer:
        Optional float32 ``(bands, H, W)`` array to hold the network output, e.g. the
        result itself for a float32 cube (each strip is read before it is written).
        Used only when every band is kept and no nodata box applies.
    stream:
        ``False``: the passes read the cube as a whole and the network output is held
        in memory, as before streaming existed (``max_memory`` bounds the tiles, with
        the cube, output and buffer counted as fixed). ``True``: every pass reads row
        strips of about ``max_memory / STRIP_SHARE`` bytes, and the network output goes
        to a :class:`~ras2s.pipeline.Scratch` file (``4 * bands * H * W`` bytes of disk
        in ``scratch_dir``, default the system's temporary folder); the memory is then
        bounded by ``max_memory`` (plus PyTorch's runtime) whatever the cube's size.
    tile_workers:
        Processes running tiles at once on the CPU, one PyTorch thread each
        (:class:`ras2s.parallel.TilePool`); ``1``: this process, with its threads.
        ``"auto"``: as many as PyTorch has threads, when the cube has at least two tiles
        per worker and ``max_memory`` holds two PyTorch runtimes
        (:data:`WORKER_RUNTIME_BYTES`) per worker; each worker then gets an equal share
        of the budget for its tile. Or a tile runner: an object with ``workers`` (int)
        and ``open(model, band_window)`` returning a mapper with ``close()``, such as
        :class:`ras2s.distributed.ClusterTiles` (the tiles on a dask cluster; its
        workers hold their tiles, so the budget is this process's alone). The result
        is the same either way (tiles are blended in the same order).
    """
    from .pipeline import (
        Masks,
        Prepared,
        Scratch,
        scan_missing,
        scan_output,
        scan_range,
        strip_rows,
        write_output,
    )

    bands, height, width = (int(s) for s in source.shape)
    dtype = np.dtype(source.dtype)
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    skip = set(parse_band_list(skip_bands, bands))
    keep = [b for b in range(bands) if b not in skip]
    scan_rows, range_rows, write_rows = strip_plan(source.shape, dtype, max_memory)
    if not stream:
        scan_rows = range_rows = height
    bars = _pass_bars(progress, stream)
    if not keep:
        warnings.warn("every band is marked bad; the cube is returned unchanged", stacklevel=3)
        write_output(
            source,
            None,
            Masks(keep, (0, height, 0, width)),
            (0.0, 1.0),
            dtype,
            write,
            rows=write_rows,
        )
        return
    masks = scan_missing(
        source,
        keep,
        nodata=nodata,
        nan_policy=nan_policy,
        rows=scan_rows,
        progress=bars("scan", height),
    )
    prepared = Prepared(source, masks)
    if model is None and normalise == "auto":  # the weights' card decides
        from .weights import load_model

        model = load_model(weights, resolve_device(device), precision=precision)
    how = resolve_normalise(normalise, model)
    found = scan_range(
        prepared,
        clean=how == "clean",
        sample=how == "percentile",
        rows=range_rows,
        progress=bars("range", prepared.shape[1]),
        threads=_filter_threads(),
    )
    lo, hi = _span(how, found)
    if hi == lo:
        shape = (bands, height, width)
        warnings.warn(f"the cube {shape} is constant ({lo}); returned unchanged", stacklevel=3)
        _record(report, how, (lo, hi), None, [])
        write_output(source, None, masks, (lo, hi), dtype, write, rows=write_rows)
        return

    torch_device = resolve_device(device)
    if model is None:
        from .weights import load_model

        model = load_model(weights, torch_device, precision=precision)
    model = model.to(torch_device).eval()
    window = resolve_band_window(band_window, model)
    kept_shape = prepared.shape
    box_pixels = kept_shape[1] * kept_shape[2]
    overlap_asked = overlap
    tiles, overlap = plan_tiles(
        kept_shape,
        dtype,
        max_memory=max_memory,
        tile=tile,
        overlap=overlap,
        channels=getattr(getattr(model, "config", None), "channels", 14),
        precision=_model_precision(model),
        band_window=window,
        fixed=4 * box_pixels if stream else None,
    )
    held = 4 * box_pixels if stream else fixed_bytes(kept_shape, dtype)
    runner = tile_workers if hasattr(tile_workers, "open") else None  # e.g. a dask cluster
    if runner is not None:  # its workers hold their tiles in their own memory
        workers = int(runner.workers)
    else:
        workers = _tile_workers(tile_workers, torch_device, tiles, overlap, kept_shape, max_memory)
    if runner is None and workers > 1 and tile is None:  # each worker holds one tile
        share_memory = (max_memory - held - workers * WORKER_RUNTIME_BYTES) // workers
        shared_tiles, shared_overlap = plan_tiles(
            kept_shape,
            dtype,
            max_memory=max(1, share_memory) + held,
            tile=None,
            overlap=overlap_asked,
            channels=getattr(getattr(model, "config", None), "channels", 14),
            precision=_model_precision(model),
            band_window=window,
            fixed=held,
        )
        side = shared_tiles if isinstance(shared_tiles, int) else min(shared_tiles)
        if share_memory > 0 and side >= MIN_WORKER_TILE:
            tiles, overlap = shared_tiles, shared_overlap
        else:  # the budget's share per worker gives tiles too small to pay: one process
            workers = 1
    if buffer is None or not prepared.trivial:
        buffer = Scratch(kept_shape, scratch_dir) if stream else np.empty(kept_shape, np.float32)
    extremes = (found.lo, found.hi)
    failed: list[dict[str, Any]] = []
    tries = _attempts(how, window, len(keep), strict)
    refined: list[float] | None = None
    spans = {how: (lo, hi)}  # a retry in band windows reuses its estimate
    check_rows = strip_rows(kept_shape, 8, max(1, max_memory // STRIP_SHARE))

    def run(lo: float, hi: float, window: int | None, refine: bool) -> Any:
        pool = None
        if runner is not None:
            pool = runner.open(model, window)
        elif workers > 1:
            from .parallel import TilePool

            pool = TilePool(model, window, workers)
        try:
            _run_into(
                prepared,
                buffer,
                model,
                torch_device,
                _normaliser(lo, hi, None),
                progress,
                tile=tiles,
                overlap=overlap,
                band_window=window,
                on_tile=on_tile,
                mapper=pool,
            )
        finally:
            if pool is not None:
                pool.close()
        out = scan_output(buffer, rows=check_rows, sample=refine)
        if not out.finite:
            raise DivergenceError(
                f"the network returned NaN or Inf for the finite cube {kept_shape}; "
                "the weights are unusable for this input",
                "NaN or Inf output",
            )
        _check_plausible((out.lo, out.hi), extremes, (lo, hi), kept_shape)
        return out

    try:
        for how, window in tries:
            if how not in spans:
                spans[how] = _span(how, found)
            lo, hi = spans[how]
            try:
                out = run(lo, hi, window, refine=how == "clean")
                wider = _refined_range(out.sample, lo, hi) if how == "clean" else None
                if wider is not None:  # the first pass saw signal beyond the estimate
                    refined = [lo, hi]
                    lo, hi = wider
                    run(lo, hi, window, refine=False)
                break
            except DivergenceError as err:
                failed.append(
                    {
                        "normalise": how,
                        "band_window": window,
                        "error": str(err),
                        "detail": err.detail,
                    }
                )
                refined = None
                if len(failed) == len(tries):
                    raise
        if failed:
            warnings.warn(FallbackWarning(_fallback_message(failed, how, window)), stacklevel=3)
        _record(report, how, (lo, hi), window, failed, refined)
        if report is not None:
            report.update(tile=tiles, overlap=overlap, streamed=stream, tile_workers=workers)
            if runner is not None:
                report["tiles_on"] = str(runner)
        write_output(
            source,
            buffer,
            masks,
            (lo, hi),
            dtype,
            write,
            rows=write_rows,
            progress=bars("write", height),
        )
    finally:
        if hasattr(buffer, "close"):
            buffer.close()


def _pass_bars(
    progress: bool | dict[str, Any], stream: bool
) -> Callable[[str, int], Callable[[int], None] | None]:
    """Progress callbacks (rows done) for the passes over a streamed cube's rows."""

    def bar(name: str, total: int) -> Callable[[int], None] | None:
        if not (progress and stream):
            return None
        from tqdm import tqdm

        extra = progress if isinstance(progress, dict) else {}
        bar = tqdm(total=total, **{"desc": name, "unit": "row", "leave": False, **extra})

        def update(rows: int) -> None:
            bar.update(rows)
            if bar.n >= total:
                bar.close()

        return update

    return bar


def _span(how: str, found: Any) -> tuple[float, float]:
    """``(lo, hi)`` mapped to 0 and 1 for normalisation ``how``, from a range scan.

    ``minmax``: the minimum and maximum; ``percentile``: the 0.5th and 99.5th
    percentiles of the sample; ``clean``: the estimated clean range; each falls back to
    the minimum and maximum when it collapses. ``none``: 0 and 1.
    """
    if how == "none":
        return 0.0, 1.0
    lo, hi = found.lo, found.hi
    if hi > lo and how == "clean":
        clo, chi = found.clean
        if chi > clo:
            lo, hi = clo, chi
    if hi > lo and how == "percentile":
        plo, phi = np.percentile(found.sample, PERCENTILES)
        if phi > plo:
            lo, hi = float(plo), float(phi)
    check_range(lo, hi)
    return float(lo), float(hi)


def _refined_range(sample: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
    """A wider ``(lo, hi)`` when a first pass's output extends the estimated range.

    ``sample`` holds network outputs for the cube normalised by ``(lo, hi)`` (an evenly
    strided sample of at most 4 million values, :func:`ras2s.pipeline.scan_output`).
    Where its 0.01st or 99.99th percentile lies more than :data:`REFINE_MARGIN` outside
    [0, 1], the denoised signal reaches beyond the estimate (bright or dark features
    smaller than the estimate's filters), and the union of both ranges is returned for
    a second pass; else None.
    """
    out_lo, out_hi = np.percentile(sample, REFINE_PERCENTILES)
    if out_lo >= -REFINE_MARGIN and out_hi <= 1 + REFINE_MARGIN:
        return None
    span = hi - lo
    wider = lo + min(0.0, float(out_lo)) * span, lo + max(1.0, float(out_hi)) * span
    try:
        check_range(*wider)
    except InputError:  # near the float limits: keep the first pass
        return None
    return wider


def _attempts(
    how: str, window: int | None, bands: int, strict: bool
) -> list[tuple[str, int | None]]:
    """The ``(normalisation, band window)`` settings :func:`denoise` tries, in order.

    First what was asked. Unless ``strict``: then, when the network ran more than
    :data:`RETRY_BAND_WINDOW` bands at once, the same normalisation in windows of that
    many bands; then ``minmax`` (every value in [0, 1]: the most conservative) in such
    windows. ``none`` is never replaced (the caller says the cube is already in range).
    """
    tries = [(how, window)]
    if strict:
        return tries
    short = RETRY_BAND_WINDOW if bands > RETRY_BAND_WINDOW else window
    if window != short and (window is None or window > RETRY_BAND_WINDOW):
        tries.append((how, short))
    if how not in ("minmax", "none"):
        tries.append(("minmax", short))
    return tries


def _describe_setting(how: str, window: int | None) -> str:
    runs = "the whole cube" if window is None else f"{window}-band windows"
    return f"{runs} with '{how}' normalisation"


def _fallback_message(failed: list[dict[str, Any]], how: str, window: int | None) -> str:
    """One line: what diverged and what was used instead."""
    tried = "; then on ".join(
        f"{_describe_setting(f['normalise'], f['band_window'])} ({f['detail']})" for f in failed
    )
    return (
        f"the network diverged on {tried}; denoised in "
        f"{_describe_setting(how, window)} instead (--strict makes this an error)"
    )


def _record(
    report: dict[str, Any] | None,
    how: str,
    span: tuple[float, float],
    window: int | None,
    failed: list[dict[str, Any]],
    refined: list[float] | None = None,
) -> None:
    """Fill the caller's ``report`` dict (if any) with what :func:`denoise` did."""
    if report is None:
        return
    report.update(
        normalise=how,
        range=[float(span[0]), float(span[1])],
        band_window=window,
        fallback=failed,
        first_pass_range=None if refined is None else [float(v) for v in refined],
    )


def classical_normalise(normalise: str) -> str:
    """The normalisation a classical method uses: ``"auto"`` is ``"minmax"``.

    The classical methods keep the paper's convention, in whose units ``--sigma`` is
    given; any other choice is used as asked.
    """
    return "minmax" if normalise == "auto" else normalise


def denoise_classical(
    cube: np.ndarray,
    method: str,
    *,
    layout: str = "BHW",
    sigma: float | None = None,
    nan_policy: str = "error",
    normalise: str = "minmax",
    **params: Any,
) -> np.ndarray:
    """Denoise with a classical baseline from :mod:`ras2s.baselines`, same conventions.

    The cube is normalised as ``normalise`` says (``"auto"`` and the default: global
    min-max to [0, 1], the paper's convention), denoised whole (no tiling), and mapped
    back to its range and dtype. ``sigma`` is in the normalised units (``30/255`` for the
    paper's sigma 30); ``None`` lets the method estimate it per band.
    """
    from . import baselines

    array = np.asarray(cube)
    _check_cube(array)
    data = _as_bands_first(array, layout)
    lo, hi, fills = _value_range(data, classical_normalise(normalise), nan_policy)
    if hi == lo:
        warnings.warn(
            f"the cube {array.shape} is constant ({lo}); returned unchanged", stacklevel=2
        )
        return array.copy()
    normalised = _normaliser(lo, hi, fills)(data)
    out = baselines.run(method, normalised, sigma=sigma, **params).astype(np.float32, copy=False)
    result = denormalise(out, lo, hi, array.dtype, copy=False)
    if layout.upper() == "HWB":
        result = np.ascontiguousarray(result.transpose(1, 2, 0))
    return result


def parse_band_list(text: str | Sequence[int] | None, bands: int | None = None) -> list[int]:
    """``"0-4,103-112"`` (0-based, ranges inclusive) or a sequence of ints -> sorted list.

    With ``bands`` given, every index must lie in ``[0, bands)``.
    """
    if text is None:
        return []
    picked: set[int] = set()
    if isinstance(text, str):
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            try:
                first, last = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                raise InputError(
                    f"bad band list {text!r}: expected 0-based indices and ranges like 0-4,103-112"
                ) from None
            if last < first:
                raise InputError(f"bad band range {part!r} in {text!r}: end before start")
            picked.update(range(first, last + 1))
    else:
        picked.update(int(b) for b in text)
    out = sorted(picked)
    if out and (out[0] < 0 or (bands is not None and out[-1] >= bands)):
        raise InputError(f"band indices {out[0]}..{out[-1]} outside the cube's 0..{bands - 1}")
    return out


def _run_on_valid_box(
    run: Callable[[np.ndarray], np.ndarray], work: np.ndarray, missing: np.ndarray | None
) -> np.ndarray:
    """``run`` on the bounding box of the pixels valid in some band; the rest is ``work``.

    ``work`` ``(bands, H, W)``; ``missing`` its boolean nodata mask (or None: all valid).
    Pixels outside the box are missing in every band, so the caller restores them.
    """
    if missing is None:
        return run(work)
    valid = ~missing.all(axis=0)
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    if work[box].shape == work.shape:
        return run(work)
    out = work.copy()
    out[box] = run(np.ascontiguousarray(work[box]))
    return out


def fill_nodata(
    work: np.ndarray, nodata: float | None, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(filled, missing)``: ``work`` with its ``nodata`` values replaced by band means.

    ``work`` ``(bands, H, W)`` is not modified (a copy is filled when anything is
    missing). Each band's missing values get the mean of its valid ones (rounded for
    integers); a band with none gets the mean of the other bands' means. ``missing`` is
    the boolean mask, or None when no value equals ``nodata`` (NaN matches NaN).
    ``shape`` names the cube in the error raised when every value is nodata.
    """
    if nodata is None:
        return work, None
    missing = np.isnan(work) if math.isnan(nodata) else work == nodata
    if not missing.any():
        return work, None
    valid_any = ~missing.all(axis=(1, 2))
    if not valid_any.any():
        raise InputError(f"the cube {shape or work.shape} holds only nodata ({nodata})")
    work = work.copy()
    means = np.array(
        [
            band[~m].mean(dtype=np.float64) if ok else np.nan
            for band, m, ok in zip(work, missing, valid_any, strict=True)
        ]
    )
    means[~valid_any] = np.nanmean(means)
    if np.issubdtype(work.dtype, np.integer):
        means = np.rint(means)
    for b in range(work.shape[0]):
        work[b][missing[b]] = means[b]
    return work, missing


def normalisation_range(
    cube: np.ndarray,
    normalise: str = "auto",
    model: torch.nn.Module | None = None,
    *,
    nodata: float | None = None,
) -> tuple[str, float, float]:
    """``(how, lo, hi)``: what :func:`denoise` maps to 0 and 1 for a bands-first ``cube``.

    As :func:`denoise` computes it: nodata values are left out (filled with their band's
    mean, over the valid box), NaN/Inf filled likewise (``nan_policy="fill"``), and
    ``"auto"`` resolved with ``model``'s card. Without a fallback after a divergence,
    that is the range used.
    """
    how = resolve_normalise(normalise, model)
    with warnings.catch_warnings():  # NaN/Inf are the caller's to report
        warnings.simplefilter("ignore")
        lo, hi, _ = _value_range(np.asarray(cube), how, "fill", nodata=nodata)
    return how, lo, hi


@dataclass(frozen=True)
class CubeScan:
    """What :func:`scan_cube` found in a cube, read strip by strip.

    ``lo``/``hi``: the minimum and maximum of the valid values (None when there are
    none); ``nonfinite``: NaN/Inf values (nodata NaN included); ``left_out``: values
    denoising leaves out (nodata and NaN/Inf); ``normalise``: ``(how, lo, hi)`` that
    :func:`denoise` maps to 0 and 1, or None with ``why`` saying why there is none.
    """

    lo: float | None
    hi: float | None
    nonfinite: int
    left_out: int
    normalise: tuple[str, float, float] | None
    why: str | None = None


def scan_cube(
    source: Any,
    normalise: str = "auto",
    model: torch.nn.Module | None = None,
    *,
    nodata: float | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: bool | dict[str, Any] = False,
) -> CubeScan:
    """Value range, NaN/Inf and nodata counts and the normalisation of a cube, in strips.

    ``source``: ``(bands, H, W)``, an array or anything read by windows
    (:class:`ras2s.io.CubeSource`): it is read in row strips of about
    ``max_memory / 8`` (:func:`strip_plan`), as a streamed :func:`denoise` reads it,
    so a cube larger than memory can be described. The normalisation is computed as
    :func:`normalisation_range` computes it (NaN/Inf filled, nodata left out).
    """
    from .pipeline import Prepared, scan_missing, scan_range

    how = resolve_normalise(normalise, model)
    bands, height, _ = (int(s) for s in source.shape)
    scan_rows, range_rows, _ = strip_plan(source.shape, np.dtype(source.dtype), max_memory)
    bars = _pass_bars(progress, True)
    with warnings.catch_warnings():  # NaN/Inf are the caller's to report
        warnings.simplefilter("ignore")
        masks = scan_missing(
            source,
            range(bands),
            nodata=nodata,
            nan_policy="fill",
            rows=scan_rows,
            progress=bars("scan", height),
            require_valid=False,
        )
    nan_nodata = nodata is not None and math.isnan(nodata)
    nonfinite = masks.nonfinite + (masks.missing if nan_nodata else 0)
    left_out = masks.nonfinite + masks.missing
    if masks.means is not None and not np.isfinite(masks.means).any():
        what = f"only nodata ({nodata})" if masks.missing else "no finite value"
        why = f"the cube {tuple(source.shape)} holds {what}"
        return CubeScan(None, None, nonfinite, left_out, None, why)
    found = scan_range(
        Prepared(source, masks),
        clean=how == "clean",
        sample=how == "percentile",
        rows=range_rows,
        progress=bars("range", masks.box[1] - masks.box[0]),
        threads=_filter_threads(),
    )
    lo, hi = _span(how, found)
    return CubeScan(found.lo, found.hi, nonfinite, left_out, (how, lo, hi))


def denoise_masked(
    cube: np.ndarray | torch.Tensor,
    run: Callable[[np.ndarray], np.ndarray],
    *,
    layout: str = "BHW",
    nodata: float | None = None,
    skip_bands: Sequence[int] | None = None,
) -> np.ndarray | torch.Tensor:
    """Run a denoiser ``run`` (bands-first array -> same) around nodata and bad bands.

    - Bands in ``skip_bands`` are not given to ``run`` and come back unchanged.
    - Values equal to ``nodata`` (NaN matches NaN) are replaced, per band, by the mean
      of that band's valid values before ``run``; as these fills lie within the valid
      values' range, the min-max normalisation inside ``run`` sees only valid values.
      They come back exactly as they were.
    - ``run`` sees only the bounding box of the pixels valid in some band: a nodata
      frame around a scene (a GeoTIFF's collar) is neither computed nor seen by the
      network, whose image-wide statistics (HFComp) it would otherwise shift.

    Returns the same type, shape, layout and dtype as ``cube``; ``cube`` is not modified.
    """
    as_torch = isinstance(cube, torch.Tensor)
    array = cube.detach().cpu().numpy() if as_torch else np.asarray(cube)
    _check_cube(array)
    data = _as_bands_first(array, layout)
    skip = parse_band_list(skip_bands, data.shape[0])
    keep = [b for b in range(data.shape[0]) if b not in set(skip)]
    result = data.copy()
    if not keep:
        warnings.warn("every band is marked bad; the cube is returned unchanged", stacklevel=3)
    else:
        work, missing = fill_nodata(data[keep], nodata, array.shape)
        out = _run_on_valid_box(run, work, missing)
        if missing is not None:
            out[missing] = data[keep][missing]
        result[keep] = out
    if nodata is not None:  # a valid pixel denoised onto the nodata value moves off it
        from .nodata import keep_off_nodata

        result = keep_off_nodata(result, data != nodata, nodata)
    if layout.upper() == "HWB":
        result = np.ascontiguousarray(result.transpose(1, 2, 0))
    return torch.from_numpy(result) if as_torch else result
