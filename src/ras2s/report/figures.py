"""Figures of denoising results: false colour, comparisons with insets, error plots.

Cubes are bands first ``(bands, H, W)`` in one common unit (normalised to [0, 1] for
the PSNR titles to mean what the paper's do). Figures are built on
:class:`matplotlib.figure.Figure` with the Agg canvas: nothing touches
``matplotlib.pyplot`` or its global state, so this works headless and in threads.
Every figure function returns the Figure and, given ``path``, also writes a PNG.

False colour
------------
:func:`false_colour` maps three bands to red, green and blue:

- 31 bands (CAVE / ICVL style, 400-700 nm in 10 nm steps): bands ``(27, 16, 6)``,
  i.e. 670, 560 and 460 nm;
- 100 bands or more: treated as AVIRIS-like, 400-2500 nm evenly spaced, the bands
  nearest 650, 550 and 460 nm: ``round((nm - 400) / 2100 * (bands - 1))`` (for 224
  bands ``(27, 16, 6)``, for 205 ``(24, 15, 6)``); sensors with another range (e.g.
  Samson, 400-890 nm) should pass ``bands``;
- any other count: evenly spaced, the bands at 5/6, 1/2 and 1/6 of the band range.

Each channel is stretched linearly between its 2nd and 98th percentile, computed on
the **reference** cube and reused for every panel so they are comparable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ras2s.errors import InputError, Ras2sError

__all__ = [
    "as_cube",
    "check_pixels",
    "check_rgb",
    "same_shape",
    "INSET_COLOUR",
    "comparison_figure",
    "default_bands",
    "error_maps",
    "false_colour",
    "inset_geometry",
    "inset_panel",
    "per_band_psnr_figure",
    "spectral_difference_figure",
    "stretch_limits",
    "write_preview",
]

#: RGB colour of the inset box and of the magnified corner's frame.
INSET_COLOUR: tuple[int, int, int] = (255, 220, 0)
_PERCENTILES = (2.0, 98.0)
_PANEL_INCHES = 2.4
_TITLE_INCHES = 0.45
_DPI = 100


class MissingReportDependencyError(Ras2sError, ImportError):
    """matplotlib (the ``report`` extra) is not installed."""


def _mpl() -> tuple[Any, Any]:
    """Return (Figure, FigureCanvasAgg) without importing pyplot."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MissingReportDependencyError(
            f"figures need matplotlib, which cannot be imported ({err}); install the "
            "extra: pip install 'ras2s[report]'"
        ) from err
    return Figure, FigureCanvasAgg


def _new_figure(width: float, height: float, dpi: int) -> Any:
    figure_cls, canvas_cls = _mpl()
    fig = figure_cls(figsize=(width, height), dpi=dpi)
    canvas_cls(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike | None) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically (flushed, then renamed)."""
    if path is not None:
        from ..io import write_atomically

        write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=fig.dpi))


# ------------------------------------------------------------------------ checks
def as_cube(x: Any, what: str) -> np.ndarray:
    """``x`` as a real ``(bands, H, W)`` array; :class:`InputError` naming ``what`` otherwise."""
    arr = np.asarray(x)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(f"{what}: expected a cube (bands, H, W), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{what}: expected a real numeric cube, got dtype {arr.dtype}")
    return arr


def same_shape(ref: np.ndarray, others: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The cubes of ``others`` as arrays, each checked to have the shape of ``ref``."""
    out = {}
    for name, cube in others.items():
        arr = as_cube(cube, name)
        if arr.shape != ref.shape:
            raise InputError(
                f"{name}: shape {arr.shape} differs from the reference's {ref.shape} (bands, H, W)"
            )
        out[name] = arr
    return out


# ------------------------------------------------------------------ false colour
def default_bands(n_bands: int) -> tuple[int, int, int]:
    """The (red, green, blue) band indices used when none are given (see module notes).

    Parameters
    ----------
    n_bands : int
        Number of bands of the cube.

    Returns
    -------
    tuple of 3 int

    Examples
    --------
    >>> default_bands(31)
    (27, 16, 6)
    >>> default_bands(224)
    (27, 16, 6)
    >>> default_bands(7)
    (5, 3, 1)
    """
    if n_bands < 1:
        raise InputError(f"a cube needs at least one band, got {n_bands}")
    if n_bands == 31:
        return (27, 16, 6)
    if n_bands >= 100:
        return tuple(round((nm - 400) / 2100 * (n_bands - 1)) for nm in (650, 550, 460))
    top = n_bands - 1
    return (round(top * 5 / 6), round(top / 2), round(top / 6))


def check_rgb(bands: Sequence[int] | None, n_bands: int) -> tuple[int, int, int]:
    """Three (red, green, blue) band indices in range; ``None``: :func:`default_bands`."""
    if bands is None:
        return default_bands(n_bands)
    picked = tuple(int(b) for b in bands)
    if len(picked) != 3 or not all(0 <= b < n_bands for b in picked):
        raise InputError(
            f"bands must be three indices (red, green, blue) in [0, {n_bands - 1}], "
            f"got {tuple(bands)}"
        )
    return picked  # type: ignore[return-value]


def stretch_limits(
    cube: Any,
    bands: Sequence[int] | None = None,
    *,
    percentiles: tuple[float, float] = _PERCENTILES,
) -> np.ndarray:
    """Per-channel (low, high) stretch limits: percentiles of the three chosen bands.

    Parameters
    ----------
    cube : array_like, shape (bands, H, W)
        The reference cube.
    bands : three ints, optional
        Red, green, blue band indices (default: :func:`default_bands`).
    percentiles : (float, float)
        Lower and upper percentile (default 2 and 98).

    Returns
    -------
    ndarray of float64, shape (3, 2)
    """
    arr = as_cube(cube, "cube")
    idx = check_rgb(bands, arr.shape[0])
    limits = np.empty((3, 2))
    for c, b in enumerate(idx):
        band = arr[b].astype(np.float64)
        finite = band[np.isfinite(band)]
        lo, hi = np.percentile(finite, percentiles) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        limits[c] = lo, hi
    return limits


def false_colour(
    cube: Any,
    bands: Sequence[int] | None = None,
    *,
    limits: np.ndarray | None = None,
    percentiles: tuple[float, float] = _PERCENTILES,
) -> np.ndarray:
    """A false-colour RGB image of three bands of a cube.

    Parameters
    ----------
    cube : array_like, shape (bands, H, W)
        Any real cube.
    bands : three ints, optional
        (red, green, blue) band indices; default from :func:`default_bands`.
    limits : ndarray, shape (3, 2), optional
        Stretch limits per channel, e.g. :func:`stretch_limits` of the clean cube, so
        several images share one stretch. Default: this cube's own percentiles.
    percentiles : (float, float)
        Used when ``limits`` is None.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    Examples
    --------
    >>> import numpy as np
    >>> cube = np.random.default_rng(0).random((31, 8, 8))
    >>> false_colour(cube).shape
    (8, 8, 3)
    """
    arr = as_cube(cube, "cube")
    idx = check_rgb(bands, arr.shape[0])
    lim = stretch_limits(arr, idx, percentiles=percentiles) if limits is None else limits
    lim = np.asarray(lim, dtype=np.float64)
    if lim.shape != (3, 2):
        raise InputError(f"limits must have shape (3, 2), got {lim.shape}")
    rgb = np.stack([arr[b].astype(np.float64) for b in idx], axis=-1)
    scaled = (rgb - lim[:, 0]) / np.maximum(lim[:, 1] - lim[:, 0], 1e-12)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


# ------------------------------------------------------------------------ insets
def inset_geometry(
    shape: tuple[int, int], inset: tuple[int, int, int], *, upscale: int = 1
) -> dict[str, int]:
    """Where the inset box and its magnified copy go in a panel of ``shape`` (H, W).

    The panel is first enlarged ``upscale`` times (nearest neighbour, so small images
    stay sharp in a figure). The box is the square ``[y0, y0 + size) x [x0, x0 + size)``
    of the input, i.e. side ``bsize = size * upscale`` at ``(by0, bx0) = (y0, x0) *
    upscale`` in the output, with a frame of ``thickness = max(1, round(min(H, W) *
    upscale / 100))`` pixels drawn on its outermost pixels. The magnified copy has the
    side ``msize = max(bsize, round(0.45 min(H, W) upscale))`` (frame included, nearest
    neighbour) and sits in the corner diagonally opposite the box's centre.

    Returns
    -------
    dict
        ``upscale``, ``thickness``, ``by0``, ``bx0``, ``bsize``, ``my0``, ``mx0`` (top
        left of the magnified copy) and ``msize``.
    """
    h, w = shape
    y0, x0, size = (int(v) for v in inset)
    u = int(upscale)
    if u < 1:
        raise InputError(f"upscale must be an integer >= 1, got {upscale!r}")
    if size < 2 or y0 < 0 or x0 < 0 or y0 + size > h or x0 + size > w:
        raise InputError(
            f"inset (y0={y0}, x0={x0}, size={size}) must be a square of side >= 2 inside "
            f"the {h} x {w} image"
        )
    side = min(h, w) * u
    msize = min(max(size * u, round(0.45 * side)), side)
    cy, cx = y0 + size / 2, x0 + size / 2
    return {
        "upscale": u,
        "thickness": max(1, round(side / 100)),
        "by0": y0 * u,
        "bx0": x0 * u,
        "bsize": size * u,
        "my0": 0 if cy >= h / 2 else h * u - msize,
        "mx0": 0 if cx >= w / 2 else w * u - msize,
        "msize": msize,
    }


def _frame(img: np.ndarray, y0: int, x0: int, side: int, t: int, col: np.ndarray) -> None:
    box = img[y0 : y0 + side, x0 : x0 + side]
    t = max(1, min(t, side // 2))
    box[:t, :] = col
    box[-t:, :] = col
    box[:, :t] = col
    box[:, -t:] = col


def inset_panel(
    rgb: np.ndarray,
    inset: tuple[int, int, int],
    *,
    upscale: int = 1,
    colour: tuple[int, int, int] = INSET_COLOUR,
) -> np.ndarray:
    """Draw the inset box on an RGB image and paste its magnified copy in a corner.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3)
        Not modified.
    inset : (y0, x0, size)
        Top-left corner and side of the square to magnify, in pixels of ``rgb``.
    upscale : int
        Enlarge the whole panel this many times first (nearest neighbour).
    colour : (r, g, b)
        Frame colour.

    Returns
    -------
    ndarray of uint8, shape (H * upscale, W * upscale, 3)
        See :func:`inset_geometry` for where things go.
    """
    src = np.asarray(rgb, dtype=np.uint8)
    geo = inset_geometry(src.shape[:2], inset, upscale=upscale)
    u, t = geo["upscale"], geo["thickness"]
    img = np.repeat(np.repeat(src, u, axis=0), u, axis=1)
    y0, x0, size = (int(v) for v in inset)
    crop = src[y0 : y0 + size, x0 : x0 + size]
    m = geo["msize"]
    pick = np.minimum((np.arange(m) * size) // m, size - 1)
    col = np.asarray(colour, dtype=np.uint8)
    my0, mx0 = geo["my0"], geo["mx0"]
    img[my0 : my0 + m, mx0 : mx0 + m] = crop[pick][:, pick]
    _frame(img, my0, mx0, m, t, col)
    _frame(img, geo["by0"], geo["bx0"], geo["bsize"], t, col)  # last: stays visible
    return img


# ---------------------------------------------------------------------- figures
def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    from ras2s.metrics import mpsnr

    return mpsnr(x.astype(np.float64), ref.astype(np.float64))


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    cols = max(1, min(n, ncols or min(n, 5)))
    return cols, math.ceil(n / cols)


def _image_axes(fig: Any, index: int, cols: int, rows: int) -> Any:
    """Axes for panel ``index`` in a grid of fixed-size cells with a title strip."""
    cw, ch = 1.0 / cols, 1.0 / rows
    r, c = divmod(index, cols)
    title_frac = _TITLE_INCHES / (_PANEL_INCHES + _TITLE_INCHES) * ch
    pad = 0.03 * cw
    ax = fig.add_axes([c * cw + pad, 1 - (r + 1) * ch + pad, cw - 2 * pad, ch - title_frac - pad])
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def comparison_figure(
    clean: Any,
    noisy: Any | None,
    results: Mapping[str, Any],
    *,
    inset: tuple[int, int, int] | None = None,
    bands: Sequence[int] | None = None,
    path: str | os.PathLike | None = None,
    ncols: int | None = None,
    dpi: int = _DPI,
) -> Any:
    """Side-by-side false-colour panels: clean, noisy and every result, with PSNR.

    Every panel uses the clean cube's stretch (:func:`stretch_limits`) and, when
    ``inset`` is given, shows the same box and magnified corner (:func:`inset_panel`),
    as in the paper's visual comparisons. Titles give the MPSNR (dB, data range 1)
    against ``clean``.

    Parameters
    ----------
    clean, noisy : array_like, shape (bands, H, W)
        Reference and noisy cubes (normalised to [0, 1] for the PSNR to be the paper's);
        ``noisy`` may be None (no noisy panel).
    results : mapping of str to array_like
        Method name -> denoised cube, same shape.
    inset : (y0, x0, size), optional
        Square to magnify.
    bands : three ints, optional
        (red, green, blue) band indices.
    path : path-like, optional
        Write the figure there as PNG.
    ncols : int, optional
        Panels per row (default: all in one row up to 5).
    dpi : int
        Resolution; each panel is 2.4 inches wide.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ref = as_cube(clean, "clean")
    cubes = same_shape(ref, {} if noisy is None else {"noisy": noisy})
    cubes.update(same_shape(ref, results))
    idx = check_rgb(bands, ref.shape[0])
    lim = stretch_limits(ref, idx)
    panels = [("clean (reference)", ref)] + [
        (f"{name}\n{_psnr(cube, ref):.2f} dB", cube) for name, cube in cubes.items()
    ]
    cols, rows = _grid(len(panels), ncols)
    fig = _new_figure(cols * _PANEL_INCHES, rows * (_PANEL_INCHES + _TITLE_INCHES), dpi)
    upscale = max(1, int(0.9 * _PANEL_INCHES * dpi) // max(ref.shape[1:]))
    for i, (title, cube) in enumerate(panels):
        rgb = false_colour(cube, idx, limits=lim)
        if inset is not None:
            rgb = inset_panel(rgb, inset, upscale=upscale)
        ax = _image_axes(fig, i, cols, rows)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    _save(fig, path)
    return fig


def error_maps(
    clean: Any,
    results: Mapping[str, Any],
    *,
    vmax: float | None = None,
    path: str | os.PathLike | None = None,
    ncols: int | None = None,
    dpi: int = _DPI,
) -> Any:
    """Mean absolute error over bands, one map per result, one shared colour scale.

    Parameters
    ----------
    clean : array_like, shape (bands, H, W)
        Reference.
    results : mapping of str to array_like
        Name -> cube (include ``"noisy"`` to show the input's error too).
    vmax : float, optional
        Top of the colour scale (default: the largest 99th percentile of the maps).
    path, ncols, dpi
        As in :func:`comparison_figure`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ref = as_cube(clean, "clean").astype(np.float64)
    cubes = same_shape(ref, results)
    if not cubes:
        raise InputError("error_maps needs at least one result")
    maps = {n: np.mean(np.abs(c.astype(np.float64) - ref), axis=0) for n, c in cubes.items()}
    top = vmax if vmax is not None else max(float(np.percentile(m, 99)) for m in maps.values())
    top = top if top > 0 else 1.0
    cols, rows = _grid(len(maps), ncols)
    fig = _new_figure(cols * _PANEL_INCHES + 1.1, rows * (_PANEL_INCHES + _TITLE_INCHES), dpi)
    frac = cols * _PANEL_INCHES / (cols * _PANEL_INCHES + 1.1)
    image = None
    for i, (name, m) in enumerate(maps.items()):
        ax = _image_axes(fig, i, cols, rows)
        pos = ax.get_position()
        ax.set_position([pos.x0 * frac, pos.y0, pos.width * frac, pos.height])
        image = ax.imshow(m, cmap="inferno", vmin=0.0, vmax=top, interpolation="nearest")
        ax.set_title(f"{name}\nmean |error| {m.mean():.4f}", fontsize=9)
    cax = fig.add_axes([frac + 0.05 * (1 - frac), 0.1, 0.15 * (1 - frac), 0.75])
    fig.colorbar(image, cax=cax, label="mean |error| over bands")
    _save(fig, path)
    return fig


def check_pixels(pixels: Sequence[Sequence[int]], shape: tuple[int, ...]) -> list[tuple]:
    """``(y, x)`` pixels inside a ``(bands, H, W)`` shape, as int tuples."""
    out = []
    for p in pixels:
        y, x = (int(v) for v in p)
        if not (0 <= y < shape[1] and 0 <= x < shape[2]):
            raise InputError(f"pixel ({y}, {x}) is outside the {shape[1]} x {shape[2]} image")
        out.append((y, x))
    if not out:
        raise InputError("give at least one pixel (y, x)")
    return out


def spectral_difference_figure(
    clean: Any,
    results: Mapping[str, Any],
    pixels: Sequence[Sequence[int]],
    *,
    wavelengths: Sequence[float] | None = None,
    path: str | os.PathLike | None = None,
    dpi: int = _DPI,
) -> Any:
    """Absolute error per band at chosen pixels, one panel per pixel (paper Fig. 1 style).

    Parameters
    ----------
    clean : array_like, shape (bands, H, W)
        Reference.
    results : mapping of str to array_like
        Name -> cube.
    pixels : sequence of (y, x)
        Pixels to plot.
    wavelengths : sequence of float, optional
        x axis in nm instead of band index.
    path, dpi
        As in :func:`comparison_figure`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ref = as_cube(clean, "clean").astype(np.float64)
    cubes = same_shape(ref, results)
    pts = check_pixels(pixels, ref.shape)
    x_axis = np.arange(ref.shape[0]) if wavelengths is None else np.asarray(wavelengths)
    if x_axis.shape != (ref.shape[0],):
        raise InputError(f"wavelengths must have {ref.shape[0]} values, got {x_axis.size}")
    fig = _new_figure(3.6 * len(pts), 3.0, dpi)
    axes = fig.subplots(1, len(pts), squeeze=False)[0]
    for ax, (y, x) in zip(axes, pts, strict=True):
        for name, cube in cubes.items():
            ax.plot(
                x_axis,
                np.abs(cube[:, y, x].astype(np.float64) - ref[:, y, x]),
                label=name,
                linewidth=1.2,
            )
        ax.set_title(f"pixel (y={y}, x={x})", fontsize=9)
        ax.set_xlabel("band" if wavelengths is None else "wavelength (nm)")
        ax.set_ylabel("|error|")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return fig


def per_band_psnr_figure(
    clean: Any,
    results: Mapping[str, Any],
    *,
    wavelengths: Sequence[float] | None = None,
    path: str | os.PathLike | None = None,
    dpi: int = _DPI,
) -> Any:
    """PSNR of every band (dB, data range 1) for every result.

    Parameters
    ----------
    clean : array_like, shape (bands, H, W)
        Reference.
    results : mapping of str to array_like
        Name -> cube.
    wavelengths : sequence of float, optional
        x axis in nm instead of band index.
    path, dpi
        As in :func:`comparison_figure`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ras2s.metrics import psnr_per_band

    ref = as_cube(clean, "clean").astype(np.float64)
    cubes = same_shape(ref, results)
    x_axis = np.arange(ref.shape[0]) if wavelengths is None else np.asarray(wavelengths)
    fig = _new_figure(6.0, 3.4, dpi)
    ax = fig.add_subplot(1, 1, 1)
    for name, cube in cubes.items():
        values = psnr_per_band(cube.astype(np.float64), ref)
        ax.plot(x_axis, np.minimum(values, 100.0), marker=".", label=name, linewidth=1.2)
    ax.set_xlabel("band" if wavelengths is None else "wavelength (nm)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    _save(fig, path)
    return fig


def write_preview(
    noisy: Any,
    denoised: Any,
    path: str | os.PathLike,
    bands: Sequence[int] | None = None,
    *,
    dpi: int = _DPI,
    labels: Sequence[int] | None = None,
    note: str = "",
) -> Path:
    """Write a before/after false-colour PNG: noisy | denoised.

    Both panels use the stretch of the denoised cube (the best estimate of the clean
    one), so they are comparable; the cubes may be in any common unit.

    Parameters
    ----------
    noisy, denoised : array_like, shape (bands, H, W)
        Input and output of a denoiser.
    path : path-like
        PNG to write.
    bands : three ints, optional
        (red, green, blue) band indices.
    dpi : int
        Resolution (each panel 2.4 inches wide).
    labels : three ints, optional
        Band numbers for the titles when the cubes hold only some bands of a larger
        one (default: the indices used).
    note : str
        Added to each title (e.g. ``"every 10th pixel"``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    after = as_cube(denoised, "denoised")
    before = same_shape(after, {"noisy": noisy})["noisy"]
    idx = check_rgb(bands, after.shape[0])
    lim = stretch_limits(after, idx)
    fig = _new_figure(2 * _PANEL_INCHES, _PANEL_INCHES + _TITLE_INCHES, dpi)
    for i, (title, cube) in enumerate((("noisy", before), ("denoised", after))):
        ax = _image_axes(fig, i, 2, 1)
        ax.imshow(false_colour(cube, idx, limits=lim), interpolation="nearest")
        shown = tuple(labels) if labels is not None else idx
        ax.set_title(f"{title}  (bands {shown[0]}, {shown[1]}, {shown[2]}){note}", fontsize=9)
    _save(fig, path)
    return Path(path)
