"""Dask arrays and xarray DataArrays through :func:`ras2s.denoise`, lazily.

:func:`ras2s.denoise` hands a ``dask.array.Array`` or an ``xarray.DataArray`` to
:func:`denoise` here, which returns the same type:

- **xarray.DataArray**: the band axis is the dim named ``band``, ``bands`` or
  ``wavelength`` (any case), else ``layout`` says where it is (``"BHW"``: the first dim,
  ``"HWB"``: the last). The result is ``cube.copy(data=...)``: the same dims, coords
  (rioxarray's ``spatial_ref``, hence ``.rio.crs`` and the transform), attrs, name and
  encoding. A numpy-backed DataArray goes through the numpy path (every option,
  identical numbers); a dask-backed one through the dask path below.
- **dask array**: bands first (``layout="BHW"``) or last (``"HWB"``), any chunks. The
  result is a lazy dask array of the same shape, dtype and layout.

The dask path, in two steps:

1. **The range, now.** The values mapped to 0 and 1 are global to the cube and the
   same as the numpy path's first pass (:func:`value_range`: min/max, NaN/Inf check and
   fill values, the 0.5/99.5 percentiles of the same strided sample, and for
   ``"clean"`` :func:`clean_range`, a ``map_overlap`` of the estimate's filters with a
   halo of 3 pixels (3 x 3 median, then 5 x 5 mean) and 1 band, then min/max). This
   reads the whole cube once, with dask, when :func:`denoise` is called; the network
   does not run.
2. **The network, later.** ``map_overlap`` with a halo of ``overlap`` pixels (32 by
   default) and the band axis whole in one chunk (rechunked if needed): each chunk plus
   its halo is normalised with that fixed range, denoised (tiled inside the chunk when
   it exceeds ``max_memory``), mapped back, and the halo dropped. Nothing runs until
   the result is computed (``.compute()``, ``.to_zarr()``, ``rio.to_raster()``), on
   whatever scheduler is active: threads by default, or a ``dask.distributed`` cluster
   when a ``Client`` exists.

How the result differs from the numpy path:

- **Chunks with halos instead of blended tiles.** Each output pixel comes from the
  chunk that owns it, run with ``overlap`` pixels of context on each side; the numpy
  path runs the whole image as one tile when it fits the budget, else blends
  overlapping tiles with ramps. The network's image-wide statistics differ per chunk,
  so values differ slightly, most near chunk borders. Measured with the default
  weights on CAVE cloth (256 x 256 x 31, uint16, Gaussian noise sigma 0.05 of the
  range), chunks of 128 x 128 with a 32-pixel halo against the numpy path's one
  whole-image tile (``benchmarks/dask_batch.py --compare``): max |difference| 2.0 %
  of the range mapped to [0, 1] (``minmax``; 3.2 % with ``clean``), mean 0.07 %
  (0.09 %), MPSNR against the clean cube the same to 0.01 dB (35.37 and 35.38 dB). The
  numpy path's own blended 128 x 128 tiles differ from its one tile by as much (max
  2.8 %, mean 0.08 %).
- **No second pass.** For ``"clean"`` the numpy path denoises again, with a wider
  range, when its output reaches more than 5 % beyond the estimate; that needs the
  whole output before any of it is final, so the dask path keeps the estimate.
- **No fallback.** A chunk whose output is NaN/Inf or more than 10 input spans out of
  range raises :class:`~ras2s.errors.DivergenceError` when it is computed (the numpy
  path retries in 31-band windows, then with ``"minmax"``, unless ``strict``).
- ``nodata`` and ``skip_bands`` are refused for dask input (a numpy-backed DataArray
  supports them); ``progress`` is ignored (use dask's progress bar or dashboard).

The network is loaded once per process: named weights (``"default"``, ``"official"``,
a checkpoint path, made absolute) are loaded by each worker on first use and cached
(:func:`ras2s.distributed.worker_model`); a ``model=`` object is one task of the graph,
sent once to each worker that needs it.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DivergenceError, InputError

__all__ = [
    "BAND_DIMS",
    "band_axis",
    "clean_range",
    "denoise",
    "is_lazy",
    "value_range",
]

#: Dim names taken as the band axis of a DataArray (compared in lower case).
BAND_DIMS = ("band", "bands", "wavelength")


def is_lazy(cube: Any) -> bool:
    """True for a dask array or an xarray object (checked without importing either)."""
    top = type(cube).__module__.split(".")[0]
    if top == "dask" and "dask.array" in sys.modules:
        return isinstance(cube, sys.modules["dask.array"].Array)
    return top == "xarray"


def band_axis(cube: Any, layout: str = "BHW") -> int:
    """The axis holding the bands of a 3-D ``cube``.

    A DataArray's dim named ``band``, ``bands`` or ``wavelength`` (any case); else the
    first axis (``layout="BHW"``) or the last (``"HWB"``).
    """
    for axis, dim in enumerate(getattr(cube, "dims", ())):
        if str(dim).lower() in BAND_DIMS:
            return axis
    layout = layout.upper()
    if layout not in ("BHW", "HWB"):
        raise InputError(f"layout must be 'BHW' or 'HWB', got {layout!r}")
    return 0 if layout == "BHW" else 2


def denoise(cube: Any, weights: str | os.PathLike = "default", **options: Any) -> Any:
    """:func:`ras2s.denoise` for a dask array or an ``xarray.DataArray``: same type out.

    ``options`` are :func:`ras2s.denoise`'s keyword arguments. See the module docstring
    for the band axis, what is computed when, and how the dask path differs from the
    numpy path.
    """
    layout = options.pop("layout", "BHW")
    if type(cube).__module__.split(".")[0] == "xarray":
        import xarray as xr

        if not isinstance(cube, xr.DataArray):
            raise InputError(
                f"ras2s.denoise takes an xarray.DataArray, got {type(cube).__name__}; "
                "pick one variable (ds['name'])"
            )
        if cube.ndim != 3:
            raise InputError(f"a cube must be 3-D (bands, y, x); got dims {cube.dims}")
        axis = band_axis(cube, layout)
        data = cube.data
        if _is_dask(data):
            out = _denoise_dask(_moveaxis(data, axis, 0), weights, **options)
        else:
            from .inference import denoise as denoise_numpy

            out = denoise_numpy(np.moveaxis(np.asarray(data), axis, 0), weights, **options)
        return cube.copy(data=_moveaxis(out, 0, axis))
    if cube.ndim != 3:
        raise InputError(f"a cube must be 3-D (bands, H, W); got shape {cube.shape}")
    axis = band_axis(cube, layout)
    return _moveaxis(_denoise_dask(_moveaxis(cube, axis, 0), weights, **options), 0, axis)


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


def _moveaxis(data: Any, source: int, target: int) -> Any:
    if source == target:
        return data
    if _is_dask(data):
        import dask.array as da

        return da.moveaxis(data, source, target)
    return np.moveaxis(data, source, target)


# ------------------------------------------------------------------------------ range


def _check_dask_cube(x: Any) -> None:
    if x.ndim != 3:
        raise InputError(f"a cube must be 3-D (bands, H, W); got shape {x.shape}")
    if any(np.isnan(s) for s in x.shape):
        raise InputError(
            f"the dask array's shape {x.shape} is unknown; call .compute_chunk_sizes() first"
        )
    if 0 in x.shape:
        raise InputError(f"the cube is empty: shape {x.shape}")
    if np.dtype(x.dtype).kind not in "iuf":
        raise InputError(f"the cube must hold real numbers; got dtype {x.dtype}")


def _clean_block(block: np.ndarray) -> np.ndarray:
    """The filtered copy of :func:`ras2s.ranges.clean_range` for one block, float64.

    The same calls, band by band; at the block's own edges the filters see the same
    boundary as the whole cube's (``reflect`` spatially, an edge band its own
    neighbour), which is exact where the block edge is the cube's and inside the halo
    (trimmed) elsewhere.
    """
    from scipy import ndimage

    from .ranges import BOX, MEDIAN

    spatial = [
        ndimage.median_filter(np.asarray(band, dtype=np.float64), size=MEDIAN, mode="reflect")
        for band in block
    ]
    out = np.empty(block.shape, np.float64)
    for b, current in enumerate(spatial):
        previous = spatial[max(b - 1, 0)]
        following = spatial[min(b + 1, len(spatial) - 1)]
        middle = np.maximum(
            np.minimum(previous, current), np.minimum(np.maximum(previous, current), following)
        )
        out[b] = ndimage.uniform_filter(middle, size=BOX, mode="reflect")
    return out


def _clean_smooth(x: Any) -> Any:
    """Lazy float64 filtered copy of a bands-first dask cube (finite values)."""
    from .ranges import BOX, MEDIAN

    halo = MEDIAN // 2 + BOX // 2  # pixels a filtered value depends on, on each side
    depth = {0: min(1, x.shape[0] - 1), 1: min(halo, x.shape[1] - 1), 2: min(halo, x.shape[2] - 1)}
    return x.map_overlap(
        _clean_block,
        depth=depth,
        boundary="none",
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
    )


def clean_range(x: Any) -> tuple[float, float]:
    """:func:`ras2s.ranges.clean_range` of a bands-first dask cube, computed with dask.

    The filters run per chunk through ``map_overlap`` with a halo of
    3 pixels (the median's 1 and the box mean's 2) and 1 band, so every kept value is the whole
    cube's; then min and max. Equal to :func:`ras2s.ranges.clean_range` of the whole
    array to about 1e-15 of the span (the box mean's running sums start elsewhere).
    Finite values only (fill NaN first).
    """
    import dask

    _check_dask_cube(x)
    smooth = _clean_smooth(x)
    lo, hi = dask.compute(smooth.min(), smooth.max())
    return float(lo), float(hi)


def _sample_block(
    block: np.ndarray, origin: tuple[int, int, int], shape: tuple[int, ...], step: int
) -> np.ndarray:
    """The values of ``block`` whose flat index in ``shape`` is a multiple of ``step``."""
    bands, height, width = shape
    b, y, x = np.ogrid[
        origin[0] : origin[0] + block.shape[0],
        origin[1] : origin[1] + block.shape[1],
        origin[2] : origin[2] + block.shape[2],
    ]
    flat = (b * height + y) * width + x
    return np.asarray(block)[flat % step == 0].astype(np.float64)


def _strided_sample(x: Any, step: int) -> list[Any]:
    """Delayed parts of ``x.reshape(-1)[::step]`` (the numpy path's percentile sample)."""
    import dask

    starts = [np.cumsum((0, *c[:-1])) for c in x.chunks]
    parts = []
    for index in np.ndindex(*x.numblocks):
        origin = tuple(int(starts[a][i]) for a, i in enumerate(index))
        block = x.blocks[index].to_delayed().ravel()[0]
        parts.append(dask.delayed(_sample_block)(block, origin, x.shape, step))
    return parts


def value_range(
    x: Any, normalise: str, nan_policy: str = "error"
) -> tuple[float, float, np.ndarray | None, tuple[float, float]]:
    """``(lo, hi, fills, extremes)`` of a bands-first dask cube, computed now with dask.

    ``lo, hi`` are what the numpy path's first pass maps to 0 and 1
    (:func:`ras2s.inference.normalisation_range`) for ``normalise`` (a resolved name:
    ``clean``, ``minmax``, ``percentile`` or ``none``); ``fills`` the per-band means
    (in the cube's dtype) that NaN/Inf are replaced by (``nan_policy="fill"``), else
    None; ``extremes`` the minimum and maximum of the filled cube, which the divergence
    check compares against. One pass over the data; a second for ``clean`` and
    ``percentile`` when NaN/Inf are filled (the estimate sees the filled cube).
    """
    import dask
    import dask.array as da

    from .cube import check_range
    from .inference import NAN_POLICIES, NORMALISATIONS, PERCENTILES

    _check_dask_cube(x)
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if normalise not in NORMALISATIONS:
        raise InputError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
    floating = np.dtype(x.dtype).kind == "f"
    todo: dict[str, Any] = {}
    if floating:
        finite = da.isfinite(x)
        todo["bad"] = (~finite).sum()
        todo["lo"] = da.where(finite, x, np.inf).min()
        todo["hi"] = da.where(finite, x, -np.inf).max()
        todo["sums"] = da.where(finite, x, 0).sum(axis=(1, 2), dtype=np.float64)
        todo["counts"] = finite.sum(axis=(1, 2))
    else:
        todo["lo"], todo["hi"] = x.min(), x.max()
    if normalise == "clean":
        smooth = _clean_smooth(x)
        todo["clo"], todo["chi"] = smooth.min(), smooth.max()
    if normalise == "percentile":
        todo["sample"] = _strided_sample(x, _sample_step(x))
    done = dict(zip(todo, dask.compute(*todo.values()), strict=True))

    lo, hi, fills = float(done["lo"]), float(done["hi"]), None
    n_bad = int(done.get("bad", 0))
    if n_bad:
        if nan_policy == "error":
            raise InputError(
                f"the cube {x.shape} holds {n_bad} NaN or Inf values; pass "
                "nan_policy='fill' (CLI: --nan-policy fill) to replace them by their band's mean"
            )
        counts = np.asarray(done["counts"])
        if not counts.any():
            raise InputError(f"the cube {x.shape} holds no finite value")
        with np.errstate(invalid="ignore", divide="ignore"):
            fills = np.where(counts > 0, np.asarray(done["sums"]) / counts, np.nan)
        fills = np.where(np.isfinite(fills), fills, np.nanmean(fills)).astype(x.dtype)
        lo, hi = min(lo, float(fills.min())), max(hi, float(fills.max()))
        warnings.warn(
            f"{n_bad} NaN/Inf values replaced by their band's mean before denoising",
            stacklevel=3,
        )
    extremes = (lo, hi)
    if normalise == "none":
        return 0.0, 1.0, fills, extremes
    if fills is not None and hi > lo and normalise in ("clean", "percentile"):
        # the estimate sees the cube as the network does, NaN/Inf filled: a second pass
        filled = da.where(da.isfinite(x), x, fills[:, None, None])
        if normalise == "clean":
            done["clo"], done["chi"] = clean_range(filled)
        else:
            done["sample"] = dask.compute(*_strided_sample(filled, _sample_step(x)))
    if normalise == "clean" and hi > lo:
        clo, chi = float(done["clo"]), float(done["chi"])
        if chi > clo:
            lo, hi = clo, chi
    if normalise == "percentile" and hi > lo:
        plo, phi = np.percentile(np.concatenate(done["sample"]), PERCENTILES)
        if phi > plo:
            lo, hi = float(plo), float(phi)
    check_range(lo, hi)
    return lo, hi, fills, extremes


def _sample_step(x: Any) -> int:
    """The stride of the numpy path's percentile sample (at most 4 million values)."""
    from .inference import _PERCENTILE_SAMPLE

    return max(1, x.size // _PERCENTILE_SAMPLE)


# ---------------------------------------------------------------------------- network


@dataclass(frozen=True)
class _Settings:
    """What every chunk needs besides its data (small and picklable)."""

    lo: float
    hi: float
    fills: tuple[float, ...] | None
    extremes: tuple[float, float]
    dtype: str
    device: str
    tile: int | None
    overlap: int | None
    max_memory: int
    band_window: int | None


@dataclass(frozen=True)
class WeightsRef:
    """Named weights, loaded by each process on first use and cached there."""

    weights: str
    device: str
    precision: str

    def load(self) -> Any:
        """The network, from this process's cache (:func:`~ras2s.distributed.worker_model`)."""
        from .distributed import worker_model

        return worker_model(self.weights, self.device, self.precision)


def _weights_name(weights: str | os.PathLike) -> str:
    """``weights`` as every worker can find it: a name, or an absolute checkpoint path."""
    text = os.fspath(weights)
    return os.path.abspath(text) if os.path.exists(text) else text


def _denoise_dask(
    x: Any,
    weights: str | os.PathLike = "default",
    *,
    tile: int | None = None,
    overlap: int | None = None,
    max_memory: int | None = None,
    device: Any = "cpu",
    progress: Any = False,
    nan_policy: str = "error",
    normalise: str = "auto",
    model: Any = None,
    nodata: float | None = None,
    skip_bands: Sequence[int] | None = None,
    precision: str = "auto",
    band_window: int | str | None = "auto",
    strict: bool = False,
    report: dict[str, Any] | None = None,
    **scheduling: Any,
) -> Any:
    """The dask path for a bands-first dask cube ``x``; see the module docstring.

    ``scheduling``: the numpy path's own ways to run tiles and show them
    (``tile_workers``, ``on_tile``), ignored: dask's scheduler runs the chunks.
    """
    import dask

    from .distributed import remember_model
    from .inference import (
        DEFAULT_MAX_MEMORY,
        DEFAULT_OVERLAP,
        plan_tiles,
        resolve_band_window,
        resolve_device,
        resolve_normalise,
    )

    del progress, strict, scheduling  # dask's progress bars; no fallback to be strict about
    _check_dask_cube(x)
    if nodata is not None or skip_bands is not None:
        raise InputError(
            "nodata and skip_bands are not supported for dask input; pass a numpy-backed "
            "array (.compute()) or denoise the file with `ras2s denoise`"
        )
    halo = DEFAULT_OVERLAP if overlap is None else int(overlap)
    max_memory = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
    if tile is not None:  # refuse a bad tile now, not when a chunk is computed
        plan_tiles(x.shape, x.dtype, max_memory=max_memory, tile=tile, overlap=overlap)
    torch_device = resolve_device(device)
    local = model
    if local is None:
        from .weights import load_model

        name = _weights_name(weights)
        local = load_model(name, torch_device, precision=precision)
        remember_model(local, name, str(torch_device), precision)
        network: Any = WeightsRef(name, str(torch_device), precision)
    else:
        network = dask.delayed(model, pure=True)
    how = resolve_normalise(normalise, local)
    lo, hi, fills, extremes = value_range(x, how, nan_policy)
    window = resolve_band_window(band_window, local)
    if report is not None:
        report.update(
            normalise=how,
            range=[lo, hi],
            band_window=window,
            fallback=[],
            first_pass_range=None,
        )
    if hi == lo:
        warnings.warn(f"the cube {x.shape} is constant ({lo}); returned unchanged", stacklevel=3)
        return x
    settings = _Settings(
        lo,
        hi,
        None if fills is None else tuple(float(f) for f in fills),
        extremes,
        np.dtype(x.dtype).str,
        str(torch_device),
        tile,
        overlap,
        max_memory,
        window,
    )
    if x.numblocks[0] > 1:
        x = x.rechunk({0: -1})
    depth = {0: 0, 1: min(halo, x.shape[1] - 1), 2: min(halo, x.shape[2] - 1)}
    return x.map_overlap(
        _denoise_block,
        depth=depth,
        boundary="none",
        dtype=x.dtype,
        meta=np.empty((0, 0, 0), x.dtype),
        network=network,
        settings=settings,
    )


def _denoise_block(block: np.ndarray, *, network: Any, settings: _Settings) -> np.ndarray:
    """One chunk with its halo: normalise, run the network (tiled), check, map back."""
    from .cube import denormalise
    from .distributed import tune_malloc
    from .inference import band_overlap, plan_tiles
    from .tiling import run_band_windows, run_tiled

    tune_malloc()  # under a dask nanny: glibc's mmap threshold back (2.4x)
    model = network.load() if isinstance(network, WeightsRef) else network
    if 0 in block.shape:  # dask probes functions with empty blocks
        return np.empty(block.shape, settings.dtype)
    s = settings
    scale = 1.0 / (s.hi - s.lo)
    fills = None if s.fills is None else (np.asarray(s.fills) - s.lo) * scale

    def normalise(window: np.ndarray) -> np.ndarray:
        out = (window.astype(np.float64) - s.lo) * scale
        if fills is not None:
            bad = ~np.isfinite(out)
            if bad.any():
                out[bad] = fills[np.nonzero(bad)[0]]
        return out.astype(np.float32)

    def network_run(tile: np.ndarray) -> np.ndarray:
        import torch

        if s.band_window is not None and s.band_window < tile.shape[0]:
            return run_band_windows(network_run, tile, s.band_window, band_overlap(s.band_window))
        with torch.inference_mode():
            x = torch.from_numpy(tile).to(s.device).unsqueeze(0)
            return model(x)[0].float().cpu().numpy()

    dtype = next(iter(model.parameters())).dtype
    tiles, overlap = plan_tiles(
        block.shape,
        np.dtype(s.dtype),
        max_memory=s.max_memory,
        tile=s.tile,
        overlap=s.overlap,
        channels=getattr(getattr(model, "config", None), "channels", 14),
        precision="bf16" if str(dtype) == "torch.bfloat16" else "fp32",
        band_window=s.band_window,
    )
    buffer = run_tiled(block, network_run, tile=tiles, overlap=overlap, transform=normalise)
    _check_chunk(buffer, s, block.shape)
    return denormalise(buffer, s.lo, s.hi, np.dtype(s.dtype), copy=False)


def _check_chunk(buffer: np.ndarray, s: _Settings, shape: tuple[int, ...]) -> None:
    """DivergenceError for NaN/Inf, or an output more than 10 input spans out of range."""
    in_lo, in_hi = ((e - s.lo) / (s.hi - s.lo) for e in s.extremes)
    span = max(in_hi - in_lo, 1e-12)
    out_lo, out_hi = float(np.min(buffer)), float(np.max(buffer))
    if not (np.isfinite(out_lo) and np.isfinite(out_hi)):
        raise DivergenceError(
            f"the network returned NaN or Inf on a chunk {shape} of the cube; "
            "the weights are unusable for this input",
            "NaN or Inf output",
        )
    if out_lo < in_lo - 10 * span or out_hi > in_hi + 10 * span:
        raise DivergenceError(
            f"the network output spans [{out_lo:.3g}, {out_hi:.3g}] on a chunk {shape} of a "
            f"cube normalised to [{in_lo:.3g}, {in_hi:.3g}]: the weights diverge on this input",
            f"output [{out_lo:.3g}, {out_hi:.3g}] for input [{in_lo:.3g}, {in_hi:.3g}]",
        )
