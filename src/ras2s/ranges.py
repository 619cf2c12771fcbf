"""Estimate the range of the clean signal from a noisy cube (``normalise="clean"``).

The network is trained on clean cubes scaled to [0, 1] with noise added on top, so the
best normalisation of a noisy cube maps the range of its *clean* signal to [0, 1]. The
noisy cube's own minimum and maximum (``minmax``) are set by the noise: impulses and
strong Gaussian tails squeeze the signal into part of [0, 1]. Its percentiles
(``percentile``) cut into the signal of low-noise cubes, whose bright pixels then lie far
above 1, where recurrent weights can diverge.

:func:`clean_range` takes the minimum and maximum of a cheaply denoised copy instead:

1. each band through a 3 x 3 spatial median (removes impulses, dead pixels and
   one-pixel-wide stripes or dead lines),
2. each voxel through the median of itself and its two neighbouring bands (removes what
   hits a single band: a striped, dead-lined or impulse-ridden band),
3. each band through a 5 x 5 box mean (averages away most of the Gaussian noise left).

Every step is equivariant to ``a * x + b`` (``a > 0``), so the estimate follows the
cube's units. The copy is made one band at a time (three filtered bands held at once),
so the memory is bounded whatever the cube's size. Measured against the true clean range
on 18 whole held-out cube/noise pairs with the default weights (docs/evaluation.md,
"Normalisation", with :func:`ras2s.denoise`'s second pass): it loses 0.09 dB on the
mean, where the 0.5/99.5 percentiles of the noisy cube lose 1.00 dB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = ["BOX", "HALO", "MEDIAN", "clean_range", "describe"]

#: Side of the spatial median (pixels).
MEDIAN = 3
#: Side of the box mean applied after the medians (pixels).
BOX = 5
#: Pixels beyond a strip that the filtered values of its own pixels depend on.
HALO = MEDIAN // 2 + BOX // 2


def _spatial(band: np.ndarray) -> np.ndarray:
    return ndimage.median_filter(band, size=MEDIAN, mode="reflect")


def clean_range(
    cube: np.ndarray,
    band: Callable[[int], np.ndarray] | None = None,
    *,
    rows: slice | None = None,
    threads: int = 1,
) -> tuple[float, float]:
    """``(lo, hi)``: the estimated minimum and maximum of the clean signal of ``cube``.

    Parameters
    ----------
    cube:
        ``(bands, H, W)``, any real dtype and units; finite values (fill NaN first).
        Not modified. Used for its shape, and for its bands unless ``band`` is given.
    band:
        Optional ``b -> (H, W)`` array returning band ``b`` ready for the estimate (for
        example with NaN already filled); default ``cube[b]``.
    rows:
        Only these rows of the filtered copy count (default: all). A strip of a larger
        cube read with :data:`HALO` extra rows on each side (where the cube has them)
        gives, on its own rows, the whole cube's filtered values: so the estimate can be
        made strip by strip and combined with ``min``/``max`` (:mod:`ras2s.pipeline`).
        The box mean's running sums then start at another row, which changes the last
        bits of a float64 value: the strip-wise estimate equals the whole-cube one to
        about 1e-15 of the span.
    threads:
        Threads filtering at once, each on a contiguous group of bands (plus the one
        neighbour band on each side that its median of three needs). SciPy's filters
        release the GIL; every band's filtered values are the same in any group, so the
        estimate is exactly the same for any number of threads.

    Returns
    -------
    tuple of float
        ``lo <= hi`` in the cube's units (float64 arithmetic). The first and last bands
        are their own outer neighbours in the median of three bands, so they keep their
        values in that step (as does every band of a cube of one band).
    """
    bands = cube.shape[0]
    read = band if band is not None else (lambda b: cube[b])
    groups = max(1, min(int(threads), bands // 4))  # at least 4 bands per group
    if groups == 1:
        return _bands_range(read, bands, 0, bands, rows)
    edges = np.linspace(0, bands, groups + 1).round().astype(int)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(groups) as pool:
        found = list(
            pool.map(
                lambda k: _bands_range(read, bands, edges[k], edges[k + 1], rows), range(groups)
            )
        )
    return min(lo for lo, _ in found), max(hi for _, hi in found)


def _bands_range(
    read: Callable[[int], np.ndarray], bands: int, first: int, last: int, rows: slice | None
) -> tuple[float, float]:
    """The estimate over bands ``first..last-1`` of a ``bands``-band cube (three held)."""

    def filtered(b: int) -> np.ndarray:
        return _spatial(np.asarray(read(b), dtype=np.float64))

    lo, hi = np.inf, -np.inf
    # Each band's median is taken with its two neighbours; an edge band is its own outer
    # neighbour, so its median is itself (its extremes are kept: an estimate that errs
    # wide costs less than one that cuts real signal, docs/evaluation.md).
    current = filtered(first)
    previous = filtered(first - 1) if first > 0 else current
    for b in range(first, last):
        following = filtered(b + 1) if b + 1 < bands else current
        # median of three: max(min(a, b), min(max(a, b), c))
        middle = np.maximum(
            np.minimum(previous, current), np.minimum(np.maximum(previous, current), following)
        )
        smooth = ndimage.uniform_filter(middle, size=BOX, mode="reflect")
        if rows is not None:
            smooth = smooth[rows]
        lo, hi = min(lo, float(smooth.min())), max(hi, float(smooth.max()))
        previous, current = current, following
    return lo, hi


def describe() -> str:
    """One line saying how :func:`clean_range` finds the range (for ``ras2s info``)."""
    return (
        f"min/max of a denoised copy ({MEDIAN}x{MEDIAN} median, median of 3 bands, "
        f"{BOX}x{BOX} mean)"
    )
