"""No-reference assessment of real noisy cubes and of their denoised versions.

Real scenes have no clean reference, so PSNR/SSIM cannot be computed. This module
measures what can be measured from the cubes alone, per band and in the input's own
data units (no normalisation):

- **sigma**: the noise standard deviation of each band, estimated by the robust
  wavelet-MAD rule of Donoho & Johnstone (1994): the finest diagonal detail of an
  orthonormal Haar transform, ``HH = (x[2i,2j] - x[2i,2j+1] - x[2i+1,2j] +
  x[2i+1,2j+1]) / 2`` over non-overlapping 2 x 2 blocks, and ``sigma =
  median(|HH|) / 0.6745``. iid Gaussian noise of standard deviation ``s`` gives ``HH``
  of standard deviation ``s``; smooth image content gives ``HH`` near 0, and edges,
  which touch few blocks, move the median little. It is not HySime band regression:
  the estimate of a band uses that band only, so it needs no spectral correlation and
  is not fooled by stripes shared between bands. Blocks that touch a nodata pixel are
  left out. For integer cubes ``|HH|`` lies on a grid of 0.5, and the median is
  interpolated within its class (median of grouped data) so that small sigmas (1-3
  counts) are not rounded.
- **stripe index**: the high-frequency energy of the column-mean profile. The profile
  ``p[x]`` is the mean of column ``x`` over its valid rows; its high-pass part is
  ``p - median_filter(p, 9)`` (a running median keeps scene edges, which are steps,
  and removes isolated stripe columns); the index is the root mean square of that
  high-pass part, in data units. iid noise alone gives about ``sigma / sqrt(H)``;
  stripes (columns offset by ``a``) raise it towards ``a`` times the square root of
  the striped fraction of columns.
- **residual correlation** (denoised cubes only): the Pearson correlation, per band,
  between the residual ``noisy - denoised`` (the method noise) and the denoised band.
  A denoiser that removes only noise leaves a residual uncorrelated with the image
  (near 0); one that removes structure (blur, contrast loss) leaves a residual that
  follows the image (positive).

:func:`band_table` gives these in long form, one row per cube and band (the rows of
``per_band.csv``); :func:`summarise` gives medians and the residual correlations (the
``summary.json``); :func:`ras2s.report.assessment.write_assessment` writes both plus
``report.html``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.ndimage import median_filter

from .errors import InputError

__all__ = [
    "COLUMNS",
    "named_cubes",
    "MAD_SCALE",
    "STRIPE_WINDOW",
    "band_table",
    "estimate_sigma",
    "nodata_mask",
    "residual_correlation",
    "stripe_index",
    "summarise",
]

#: Columns of :func:`band_table` rows and of ``per_band.csv``, in this order.
COLUMNS = ("cube", "band", "wavelength", "sigma", "stripe_index")
#: median(|N(0, 1)|): the MAD of a standard normal.
MAD_SCALE = 0.6745
#: Width (columns) of the running median that the stripe index subtracts.
STRIPE_WINDOW = 9
SIGMA_METHOD = "wavelet-MAD: median(|HH|)/0.6745, finest Haar diagonal detail, per band"
STRIPE_METHOD = (
    f"RMS of column-mean profile minus its running median (width {STRIPE_WINDOW}), data units"
)


def _check(cube: Any, what: str) -> np.ndarray:
    arr = np.asarray(cube)
    if arr.ndim != 3 or 0 in arr.shape:
        raise InputError(f"{what}: expected a non-empty cube (bands, H, W), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{what}: expected real numbers, got dtype {arr.dtype}")
    return arr


def nodata_mask(cube: Any, nodata: float | None = None) -> np.ndarray:
    """Boolean ``(bands, H, W)`` mask, True where a value is missing.

    Missing means equal to ``nodata`` (NaN matches NaN) or, for float cubes, not finite.

    Parameters
    ----------
    cube : array_like, shape (bands, H, W)
    nodata : float, optional
        The nodata value (e.g. -9999, GDAL_NODATA, ENVI ``data ignore value``).

    Returns
    -------
    ndarray of bool, shape (bands, H, W)
    """
    arr = _check(cube, "cube")
    floating = np.issubdtype(arr.dtype, np.floating)
    mask = ~np.isfinite(arr) if floating else np.zeros(arr.shape, bool)
    if nodata is not None and not math.isnan(nodata):
        mask |= arr == nodata
    return mask


def estimate_sigma(cube: Any, *, nodata: float | None = None) -> np.ndarray:
    """Per-band noise standard deviation by wavelet-MAD, in the cube's data units.

    Parameters
    ----------
    cube : array_like, shape (bands, H, W)
        Any real cube, H and W at least 2. Not modified.
    nodata : float, optional
        Value marking missing pixels; 2 x 2 blocks touching one are left out (as are
        non-finite values).

    Returns
    -------
    ndarray of float64, shape (bands,)
        ``median(|HH|) / 0.6745`` per band; NaN for a band with no complete valid block.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noisy = 100 + 5 * rng.standard_normal((2, 128, 128))
    >>> np.round(estimate_sigma(noisy), 1)
    array([5., 5.])
    """
    arr = _check(cube, "cube")
    if min(arr.shape[1:]) < 2:
        raise InputError(f"cube {arr.shape}: the noise estimate needs at least 2 x 2 pixels")
    mask = nodata_mask(arr, nodata)
    h2, w2 = (arr.shape[1] // 2) * 2, (arr.shape[2] // 2) * 2
    sigma = np.full(arr.shape[0], np.nan)
    for b in range(arr.shape[0]):
        x = arr[b, :h2, :w2].astype(np.float64)
        hh = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2
        m = mask[b, :h2, :w2]
        bad = m[0::2, 0::2] | m[0::2, 1::2] | m[1::2, 0::2] | m[1::2, 1::2]
        values = np.abs(hh[~bad])
        if values.size:
            integer = np.issubdtype(arr.dtype, np.integer)
            sigma[b] = (_grouped_median(values) if integer else np.median(values)) / MAD_SCALE
    return sigma


def _grouped_median(values: np.ndarray) -> float:
    """Median of ``|HH|`` of integer data, interpolated within its 0.5-wide class.

    Integer bands give ``|HH|`` on a grid of 0.5, so the plain median moves in steps of
    0.5 (up to 25 % of sigma for sigma near 1). The median of grouped data,
    ``L + (n/2 - F) / f * w`` (class lower bound ``L``, count below ``F``, class count
    ``f``, width ``w``; the class of 0 is [0, 0.25)), removes that step.
    """
    grid = np.rint(values * 2).astype(np.int64)  # class index: value = k / 2
    counts = np.bincount(grid)
    below = np.cumsum(counts) - counts
    half = values.size / 2
    k = int(np.searchsorted(np.cumsum(counts), half))
    lower, width = (0.0, 0.25) if k == 0 else (k / 2 - 0.25, 0.5)
    return lower + (half - below[k]) / counts[k] * width


def _column_means(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    counts = valid.sum(axis=0)
    sums = np.where(valid, band, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def column_profiles(cube: Any, *, nodata: float | None = None) -> np.ndarray:
    """Column-mean profile of every band: ``(bands, W)`` float64, the mean over valid rows."""
    arr = _check(cube, "cube")
    mask = nodata_mask(arr, nodata)
    return np.stack(
        [_column_means(arr[b].astype(np.float64), ~mask[b]) for b in range(arr.shape[0])]
    )


def stripe_index(
    cube: Any, *, nodata: float | None = None, window: int = STRIPE_WINDOW
) -> np.ndarray:
    """Per-band stripe index: RMS of the high-pass column-mean profile, in data units.

    Parameters
    ----------
    cube : array_like, shape (bands, H, W)
    nodata : float, optional
        Value marking missing pixels (left out of the column means).
    window : int
        Width of the running median subtracted from the profile (odd, >= 3).

    Returns
    -------
    ndarray of float64, shape (bands,)
        NaN for a band with fewer than ``window`` valid columns.
    """
    if window < 3 or window % 2 == 0:
        raise InputError(f"window must be an odd integer >= 3, got {window}")
    profiles = column_profiles(cube, nodata=nodata)
    out = np.full(profiles.shape[0], np.nan)
    for b, p in enumerate(profiles):
        p = p[np.isfinite(p)]
        if p.size >= window:
            high = p - median_filter(p, size=window, mode="reflect")
            out[b] = float(np.sqrt(np.mean(high**2)))
    return out


def residual_correlation(noisy: Any, denoised: Any, *, nodata: float | None = None) -> np.ndarray:
    """Per-band Pearson correlation of the residual ``noisy - denoised`` with ``denoised``.

    Parameters
    ----------
    noisy, denoised : array_like, shape (bands, H, W)
        Same shape; pixels missing in ``noisy`` (``nodata`` or non-finite) are left out.
    nodata : float, optional

    Returns
    -------
    ndarray of float64, shape (bands,)
        In [-1, 1]; NaN where the residual or the band is constant (e.g. a band passed
        through unchanged).
    """
    x = _check(noisy, "noisy")
    y = _check(denoised, "denoised")
    if x.shape != y.shape:
        raise InputError(f"denoised cube {y.shape} differs from the noisy cube {x.shape}")
    mask = nodata_mask(x, nodata) | nodata_mask(y, None)
    out = np.full(x.shape[0], np.nan)
    for b in range(x.shape[0]):
        valid = ~mask[b]
        d = y[b][valid].astype(np.float64)
        r = x[b][valid].astype(np.float64) - d
        r -= r.mean() if r.size else 0.0
        d -= d.mean() if d.size else 0.0
        denom = math.sqrt(float(np.dot(r, r)) * float(np.dot(d, d)))
        if denom > 0:
            out[b] = float(np.dot(r, d)) / denom
    return out


def _wavelengths(wavelengths: Sequence[float] | None, bands: int) -> list[float | None]:
    if wavelengths is None:
        return [None] * bands
    wl = [float(w) for w in wavelengths]
    if len(wl) != bands:
        raise InputError(f"{len(wl)} wavelengths given for a cube of {bands} bands")
    return wl


def named_cubes(noisy: Any, denoised: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """``{"noisy": noisy, **denoised}`` as checked ``(bands, H, W)`` arrays of one shape."""
    ref = _check(noisy, "noisy")
    cubes = {"noisy": ref}
    for name, cube in (denoised or {}).items():
        if name == "noisy":
            raise InputError("'noisy' is reserved for the input cube; name the denoised cube else")
        arr = _check(cube, name)
        if arr.shape != ref.shape:
            raise InputError(f"{name}: shape {arr.shape} differs from the noisy cube {ref.shape}")
        cubes[name] = arr
    return cubes


def band_table(
    noisy: Any,
    denoised: Mapping[str, Any] | None = None,
    *,
    wavelengths: Sequence[float] | None = None,
    nodata: float | None = None,
) -> list[dict[str, Any]]:
    """Long-form per-band table: one row per cube and band.

    Parameters
    ----------
    noisy : array_like, shape (bands, H, W)
        The input cube, in its own data units.
    denoised : mapping of str to array_like, optional
        Denoised cubes by name (same shape and units as ``noisy``).
    wavelengths : sequence of float, optional
        One per band (e.g. ENVI ``wavelength``); ``None`` in the rows when absent.
    nodata : float, optional
        Missing-pixel value; pixels missing in ``noisy`` are left out everywhere.

    Returns
    -------
    list of dict
        Keys :data:`COLUMNS`: ``cube`` (``"noisy"`` or the name, str), ``band`` (0-based
        int), ``wavelength`` (float or None), ``sigma`` and ``stripe_index`` (float, data
        units; NaN when undefined). Rows are ordered by cube, then band.
    """
    cubes = named_cubes(noisy, denoised)
    ref = cubes["noisy"]
    wl = _wavelengths(wavelengths, ref.shape[0])
    # pixels missing in the input stay missing in every output
    nodata_ref = nodata_mask(ref, nodata)
    missing = bool(nodata_ref.any())
    rows = []
    for name, cube in cubes.items():
        masked = cube
        if name != "noisy" and missing:
            masked = np.where(nodata_ref, np.nan, cube.astype(np.float64))
        sig = estimate_sigma(masked, nodata=nodata if name == "noisy" else None)
        stripes = stripe_index(masked, nodata=nodata if name == "noisy" else None)
        for b in range(ref.shape[0]):
            rows.append(
                {
                    "cube": name,
                    "band": b,
                    "wavelength": wl[b],
                    "sigma": float(sig[b]),
                    "stripe_index": float(stripes[b]),
                }
            )
    return rows


def _median(values: Sequence[float]) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else None


def summarise(
    noisy: Any,
    denoised: Mapping[str, Any] | None = None,
    *,
    rows: list[dict[str, Any]] | None = None,
    wavelengths: Sequence[float] | None = None,
    nodata: float | None = None,
) -> dict[str, Any]:
    """Summary of an assessment: medians over bands and residual correlations.

    Parameters
    ----------
    noisy, denoised, wavelengths, nodata
        As in :func:`band_table`.
    rows : list of dict, optional
        :func:`band_table`'s result for the same cubes (computed when absent).

    Returns
    -------
    dict
        ``{"shape": [bands, H, W], "nodata": ..., "sigma_method": str,
        "stripe_method": str, "cubes": {name: {...}}}``. Every cube has
        ``median_sigma`` and ``median_stripe_index`` (data units); each denoised cube
        also ``sigma_ratio`` (median over bands of sigma after / sigma before),
        ``residual_correlation`` (median over bands of :func:`residual_correlation`),
        ``residual_correlation_per_band`` and ``residual_rms`` (RMS of ``noisy -
        denoised`` over valid voxels). Undefined numbers are None (JSON null).
    """
    cubes = named_cubes(noisy, denoised)
    ref = cubes["noisy"]
    if rows is None:
        rows = band_table(noisy, denoised, wavelengths=wavelengths, nodata=nodata)
    by_cube: dict[str, dict[str, np.ndarray]] = {}
    for name in cubes:
        mine = [r for r in rows if r["cube"] == name]
        by_cube[name] = {
            "sigma": np.array([r["sigma"] for r in mine]),
            "stripe_index": np.array([r["stripe_index"] for r in mine]),
        }
    mask = nodata_mask(ref, nodata)
    summary: dict[str, Any] = {
        "shape": list(ref.shape),
        "nodata": None if nodata is None else float(nodata),
        "missing_values": int(mask.sum()),
        "units": "data units of the input (no normalisation)",
        "sigma_method": SIGMA_METHOD,
        "stripe_method": STRIPE_METHOD,
        "residual_method": "Pearson correlation per band of (noisy - denoised) with denoised",
        "cubes": {},
    }
    before = by_cube["noisy"]["sigma"]
    for name, cube in cubes.items():
        entry: dict[str, Any] = {
            "median_sigma": _median(by_cube[name]["sigma"]),
            "median_stripe_index": _median(by_cube[name]["stripe_index"]),
        }
        if name != "noisy":
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = by_cube[name]["sigma"] / before
            corr = residual_correlation(ref, cube, nodata=nodata)
            resid = ref.astype(np.float64) - cube.astype(np.float64)
            valid = ~mask & np.isfinite(resid)
            entry.update(
                {
                    "sigma_ratio": _median(ratio),
                    "residual_correlation": _median(corr),
                    "residual_correlation_per_band": [
                        None if not math.isfinite(c) else round(float(c), 6) for c in corr
                    ],
                    "residual_rms": float(np.sqrt(np.mean(resid[valid] ** 2)))
                    if valid.any()
                    else None,
                }
            )
        summary["cubes"][name] = entry
    return summary
