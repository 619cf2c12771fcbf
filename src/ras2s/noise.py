"""Noise models of the RAS2S paper, seeded and reproducible.

Every function takes a clean cube **bands first** ``(bands, H, W)``, already min-max
normalised to [0, 1], and returns a new noisy cube of the same float dtype (float32 in,
float32 out). The input is never modified and the output is **not** clipped, as in the
paper's test pipeline. Noise is drawn in float64 with :class:`numpy.random.Generator`
methods only, so the same seed gives the same noise on any machine, for any input
dtype (up to the final cast).

Noise levels are in data units of the normalised cube (``sigma=30/255``). The case
names of :func:`add_noise` use the paper's 0-255 naming: ``iid30`` means sigma 30/255.

Cases
-----
=================  =============================================================
case               definition and defaults
=================  =============================================================
``iidNN``          i.i.d. Gaussian, sigma = NN/255 on every band (any NN >= 0,
``gaussianNN``     e.g. ``iid30``; the two spellings are aliases).
``blind``          i.i.d. Gaussian, one sigma per image ~ U[10/255, 70/255]
                   (the training noise).
``noniid``         Gaussian, each band its own sigma drawn from {10, 30, 50, 70}/255.
``stripe``         ``noniid``, then floor(bands/3) random bands get stripes: per band
                   n ~ randint(floor(0.05 W), floor(0.15 W)) distinct random columns,
                   each shifted by its own offset ~ U[-0.25, 0.25].
``deadline``       ``noniid``, then floor(bands/3) random bands get dead columns:
                   n ~ randint(ceil(0.05 W), ceil(0.15 W)) random columns set to 0.
``impulse``        ``noniid``, then floor(bands/3) random bands get salt-and-pepper
                   noise: amount per band from {0.1, 0.3, 0.5, 0.7}, each pixel hit
                   with probability amount, salt (1) vs pepper (0) with prob. 0.5.
``mixture``        ``noniid``, then one permutation of the bands gives three disjoint
                   sets of floor(bands/3) bands: stripe, deadline, impulse (in this
                   order, as in the authors' ``AddNoiseComplex``).
``poisson``        y = Poisson(peak * x) / peak, default ``peak=10``.
``speckle``        y = x * (1 + n), n ~ N(0, variance), default ``variance=0.3``.
=================  =============================================================

Conventions that the authors' code leaves open, decided here:

- ``randint`` upper bounds are **exclusive** (numpy, as in the authors' and QRNN3D's
  code): stripe counts lie in [floor(0.05 W), floor(0.15 W) - 1], dead-line counts in
  [ceil(0.05 W), ceil(0.15 W) - 1]. For narrow bands the low end is raised to 1 and an
  empty range collapses to its low end, so every selected band gets at least one
  column and nothing raises for W >= 1: stripes on bands narrower than 20 columns get
  exactly one column (the authors' code draws 0 for W 7-13, 0 or 1 for W 14-19, and
  raises for W < 7); dead lines on bands narrower than 7 columns get one column (the
  authors' code raises). For W >= 20 (stripes) and W >= 7 (dead lines) the counts
  follow the authors' law exactly.
- With fewer than 3 bands, floor(bands/3) = 0: stripe, deadline, impulse and mixture
  reduce to the non-i.i.d. Gaussian part (no band gets the extra noise).
- Stripe offsets are added (the authors subtract; the offset law is symmetric).
- Random draws happen in this order: per-band sigmas, Gaussian noise (one
  ``standard_normal`` of the cube's shape), the band permutation, then per kind
  (stripe, deadline, impulse) the per-band counts or amounts and, band by band in
  increasing band order, the columns (and offsets) or the impulse masks.

Noisy-input quality of the defaults, measured on the CAVE cube ``cloth_ms_256.mat``
(256 x 256 x 31, whole cube min-max normalised to [0, 1]) with ``rng=0``: MPSNR with
data range 1, MSSIM in the ``paper`` convention of the paper's tables and, for
comparison, the ``gaussian`` one (see :mod:`ras2s.metrics`). The cube is float32; the
noise of a case with this seed is the same on any machine.

============  ==========  ===========  ==============
case          MPSNR (dB)  MSSIM paper  MSSIM gaussian
============  ==========  ===========  ==============
``iid10``     28.13       0.9418       0.7647
``iid30``     18.59       0.6517       0.3595
``iid50``     14.15       0.4084       0.1895
``iid70``     11.23       0.2630       0.1114
``blind``     14.47       0.4256       0.1997
``noniid``    16.58       0.5024       0.3011
``stripe``    16.44       0.4990       0.2976
``deadline``  16.24       0.4867       0.2892
``impulse``   14.80       0.4201       0.2525
``mixture``   13.16       0.3509       0.2066
``poisson``   17.50       0.5936       0.3315
``speckle``   18.46       0.6373       0.4644
============  ==========  ===========  ==============
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ras2s.errors import InputError

__all__ = [
    "CASES",
    "NONIID_SIGMAS",
    "add_noise",
    "deadline",
    "gaussian_blind",
    "gaussian_iid",
    "gaussian_noniid",
    "impulse",
    "mixture",
    "poisson",
    "resolve_case",
    "speckle",
    "stripe",
]

RngLike = np.random.Generator | int | None

#: Per-band sigma set of the non-i.i.d. cases, in data units.
NONIID_SIGMAS: tuple[float, ...] = (10 / 255, 30 / 255, 50 / 255, 70 / 255)
#: Impulse amounts (fraction of pixels hit) drawn per band.
IMPULSE_AMOUNTS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
#: Default Poisson peak (photon count of a pixel of value 1).
DEFAULT_PEAK: float = 10.0
#: Default speckle variance.
DEFAULT_SPECKLE_VARIANCE: float = 0.3


# --------------------------------------------------------------------------- helpers
def _as_rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        if rng < 0:
            raise InputError(f"a seed must be >= 0, got {int(rng)}")
        return np.random.default_rng(int(rng))
    raise InputError(
        f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def _seed_of(rng: RngLike) -> int | None:
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return int(rng)
    return None


def _check_cube(x: Any) -> np.ndarray:
    """Return ``x`` as a float ndarray (bands, H, W), raising InputError otherwise."""
    arr = np.asarray(x)
    if arr.ndim != 3:
        raise InputError(
            f"expected a cube of shape (bands, H, W), got an array of shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(
            f"expected a float cube normalised to [0, 1], got dtype {arr.dtype} "
            f"(shape {arr.shape}); normalise it first, e.g. (x - x.min()) / (x.max() - x.min())"
        )
    if min(arr.shape) < 1:
        raise InputError(f"cube of shape {arr.shape} is empty")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"cube of shape {arr.shape} contains NaN or Inf")
    lo, hi = float(arr.min()), float(arr.max())
    # Small excursions (spline resampling overshoot, an already noisy cube) are normal;
    # warn when the cube is clearly not normalised (e.g. raw 0..65535 counts).
    if lo < -0.5 or hi > 1.5:
        warnings.warn(
            f"noise models expect a cube in [0, 1]; this one spans [{lo:.4g}, {hi:.4g}]",
            UserWarning,
            stacklevel=3,
        )
    return arr


def _check_sigma(sigma: float, name: str = "sigma") -> float:
    s = float(sigma)
    if not math.isfinite(s) or s < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {sigma!r}")
    return s


def _check_sigmas(sigmas: Sequence[float] | None) -> np.ndarray | None:
    if sigmas is None:
        return None
    arr = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError(f"sigmas must be a non-empty set of finite values >= 0, got {sigmas!r}")
    return arr


def _check_fraction_range(fraction: tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in fraction)
    if not (0 <= lo <= hi <= 1):
        raise InputError(f"{name} must be (low, high) with 0 <= low <= high <= 1, got {fraction!r}")
    return lo, hi


def _x255(values: np.ndarray | float) -> Any:
    return np.round(np.asarray(values, dtype=np.float64) * 255, 10).tolist()


def _finish(
    out64: np.ndarray, x: np.ndarray, params: dict[str, Any], return_params: bool
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    noisy = out64.astype(x.dtype, copy=False)
    return (noisy, params) if return_params else noisy


def _noniid_part(
    x64: np.ndarray, sigmas: np.ndarray | None, gen: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Add per-band Gaussian noise, sigma per band drawn from ``sigmas`` (None: none)."""
    if sigmas is None:
        return x64.copy(), {"sigma_per_band": None, "sigma_per_band_x255": None}
    per_band = sigmas[gen.integers(0, sigmas.size, size=x64.shape[0])]
    out = x64 + gen.standard_normal(x64.shape) * per_band[:, None, None]
    return out, {
        "sigma_per_band": per_band.tolist(),
        "sigma_per_band_x255": _x255(per_band),
    }


def _n_columns(
    gen: np.random.Generator, width: int, fraction: tuple[float, float], rounding: Callable, k: int
) -> np.ndarray:
    """Draw ``k`` column counts ~ randint(round(lo W), round(hi W)), upper bound exclusive.

    The low end is raised to 1 and an empty range collapses to its low end (see the
    module notes); counts never exceed ``width``.
    """
    low = int(rounding(fraction[0] * width))
    high = int(rounding(fraction[1] * width))
    low = max(low, 1)
    high = max(high, low + 1)
    return np.minimum(gen.integers(low, high, size=k), width)


def _stripe_part(
    out: np.ndarray,
    bands: np.ndarray,
    gen: np.random.Generator,
    fraction: tuple[float, float],
    offset: float,
) -> dict[str, Any]:
    width = out.shape[2]
    counts = _n_columns(gen, width, fraction, math.floor, bands.size)
    columns, offsets = [], []
    for band, n in zip(bands, counts, strict=True):
        cols = gen.permutation(width)[:n]
        offs = gen.uniform(-offset, offset, size=n)
        out[band][:, cols] += offs[None, :]
        columns.append(cols.tolist())
        offsets.append(offs.tolist())
    return {
        "bands": bands.tolist(),
        "n_columns": counts.tolist(),
        "columns": columns,
        "offsets": offsets,
        "fraction": list(fraction),
        "max_offset": offset,
    }


def _deadline_part(
    out: np.ndarray, bands: np.ndarray, gen: np.random.Generator, fraction: tuple[float, float]
) -> dict[str, Any]:
    width = out.shape[2]
    counts = _n_columns(gen, width, fraction, math.ceil, bands.size)
    columns = []
    for band, n in zip(bands, counts, strict=True):
        cols = gen.permutation(width)[:n]
        out[band][:, cols] = 0.0
        columns.append(cols.tolist())
    return {
        "bands": bands.tolist(),
        "n_columns": counts.tolist(),
        "columns": columns,
        "fraction": list(fraction),
    }


def _impulse_part(
    out: np.ndarray,
    bands: np.ndarray,
    gen: np.random.Generator,
    amounts: np.ndarray,
    salt_vs_pepper: float,
) -> dict[str, Any]:
    per_band = amounts[gen.integers(0, amounts.size, size=bands.size)]
    for band, amount in zip(bands, per_band, strict=True):
        hit = gen.random(out.shape[1:]) < amount
        salt = gen.random(out.shape[1:]) < salt_vs_pepper
        out[band][hit & salt] = 1.0
        out[band][hit & ~salt] = 0.0
    return {
        "bands": bands.tolist(),
        "amounts": per_band.tolist(),
        "salt_vs_pepper": salt_vs_pepper,
    }


def _check_amounts(amounts: Sequence[float], salt_vs_pepper: float) -> tuple[np.ndarray, float]:
    arr = np.asarray(amounts, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all((arr >= 0) & (arr <= 1)):
        raise InputError(f"amounts must be a non-empty set of values in [0, 1], got {amounts!r}")
    q = float(salt_vs_pepper)
    if not 0 <= q <= 1:
        raise InputError(f"salt_vs_pepper must be in [0, 1], got {salt_vs_pepper!r}")
    return arr, q


def _pick_bands(gen: np.random.Generator, n_bands: int) -> np.ndarray:
    """floor(bands/3) distinct random bands, sorted."""
    return np.sort(gen.permutation(n_bands)[: n_bands // 3])


# ---------------------------------------------------------------------- noise models
def gaussian_iid(
    x: np.ndarray, sigma: float, *, rng: RngLike = None, return_params: bool = False
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Add i.i.d. Gaussian noise of one sigma to every voxel.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    sigma : float
        Standard deviation in data units (``30/255`` for the paper's "sigma 30").
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return a JSON-serialisable dict of what was used.

    Returns
    -------
    noisy : ndarray
        ``x + sigma * n``, same shape and dtype as ``x``, not clipped.
    params : dict, optional
        ``sigma``, ``sigma_x255``; only with ``return_params=True``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.full((3, 64, 64), 0.5, dtype=np.float32)
    >>> y = gaussian_iid(x, 30 / 255, rng=0)
    >>> y.dtype, y.shape
    (dtype('float32'), (3, 64, 64))
    >>> round(float((y - x).std()) * 255)
    30
    """
    arr = _check_cube(x)
    s = _check_sigma(sigma)
    gen = _as_rng(rng)
    out = arr.astype(np.float64) + s * gen.standard_normal(arr.shape)
    params = {"case": "iid", "sigma": s, "sigma_x255": _x255(s), "seed": _seed_of(rng)}
    return _finish(out, arr, params, return_params)


def gaussian_blind(
    x: np.ndarray,
    sigma_range: tuple[float, float] = (10 / 255, 70 / 255),
    *,
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Add i.i.d. Gaussian noise with one sigma per image drawn from ``U[sigma_range]``.

    This is the training noise of the paper (sigma uniform in [10, 70]/255).

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    sigma_range : (float, float)
        Low and high sigma in data units, ``low <= high``.
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return the drawn ``sigma`` (and ``sigma_x255``).

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``.

    Examples
    --------
    >>> import numpy as np
    >>> y, p = gaussian_blind(np.zeros((2, 8, 8)), rng=1, return_params=True)
    >>> 10 <= p["sigma_x255"] <= 70
    True
    """
    arr = _check_cube(x)
    lo, hi = (_check_sigma(s, "sigma_range") for s in sigma_range)
    if lo > hi:
        raise InputError(f"sigma_range must be (low, high) with low <= high, got {sigma_range!r}")
    gen = _as_rng(rng)
    s = float(gen.uniform(lo, hi))
    out = arr.astype(np.float64) + s * gen.standard_normal(arr.shape)
    params = {
        "case": "blind",
        "sigma": s,
        "sigma_x255": _x255(s),
        "sigma_range": [lo, hi],
        "seed": _seed_of(rng),
    }
    return _finish(out, arr, params, return_params)


def gaussian_noniid(
    x: np.ndarray,
    sigmas: Sequence[float] = NONIID_SIGMAS,
    *,
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Add Gaussian noise whose sigma is drawn per band from the set ``sigmas``.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    sigmas : sequence of float
        Candidate sigmas in data units, drawn uniformly per band; default
        {10, 30, 50, 70}/255.
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return ``sigma_per_band`` (and ``sigma_per_band_x255``).

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``.

    Examples
    --------
    >>> import numpy as np
    >>> y, p = gaussian_noniid(np.zeros((4, 8, 8)), rng=0, return_params=True)
    >>> len(p["sigma_per_band_x255"])
    4
    """
    arr = _check_cube(x)
    sig = _check_sigmas(sigmas)
    if sig is None:
        raise InputError("sigmas must be a non-empty set of values >= 0, got None")
    gen = _as_rng(rng)
    out, gauss = _noniid_part(arr.astype(np.float64), sig, gen)
    params = {"case": "noniid", **gauss, "sigmas": sig.tolist(), "seed": _seed_of(rng)}
    return _finish(out, arr, params, return_params)


def stripe(
    x: np.ndarray,
    *,
    sigmas: Sequence[float] | None = NONIID_SIGMAS,
    fraction: tuple[float, float] = (0.05, 0.15),
    max_offset: float = 0.25,
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Non-i.i.d. Gaussian noise plus stripes on floor(bands/3) random bands.

    Per selected band, ``n ~ randint(floor(fraction[0] W), floor(fraction[1] W))``
    (upper bound exclusive; at least one column, see the module notes) distinct random
    columns are each shifted by their own offset ``~ U[-max_offset, max_offset]``.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    sigmas : sequence of float or None
        Per-band sigma set of the Gaussian part (data units); None: no Gaussian part.
    fraction : (float, float)
        Column-count range as fractions of the width W.
    max_offset : float
        Half-width of the uniform offset law.
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return the sigmas, striped bands, their columns and offsets.

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``; ``params["stripe"]`` holds ``bands``,
        ``n_columns``, ``columns`` and ``offsets`` (lists aligned with ``bands``).

    Examples
    --------
    >>> import numpy as np
    >>> y, p = stripe(np.zeros((6, 40, 40)), sigmas=None, rng=0, return_params=True)
    >>> len(p["stripe"]["bands"]), all(2 <= n < 6 for n in p["stripe"]["n_columns"])
    (2, True)
    """
    arr = _check_cube(x)
    sig = _check_sigmas(sigmas)
    frac = _check_fraction_range(fraction, "fraction")
    off = _check_sigma(max_offset, "max_offset")
    gen = _as_rng(rng)
    out, gauss = _noniid_part(arr.astype(np.float64), sig, gen)
    bands = _pick_bands(gen, arr.shape[0])
    extra = _stripe_part(out, bands, gen, frac, off)
    params = {"case": "stripe", **gauss, "stripe": extra, "seed": _seed_of(rng)}
    return _finish(out, arr, params, return_params)


def deadline(
    x: np.ndarray,
    *,
    sigmas: Sequence[float] | None = NONIID_SIGMAS,
    fraction: tuple[float, float] = (0.05, 0.15),
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Non-i.i.d. Gaussian noise plus dead columns (set to 0) on floor(bands/3) bands.

    Per selected band, ``n ~ randint(ceil(fraction[0] W), ceil(fraction[1] W))``
    (upper bound exclusive; at least one column, see the module notes) distinct random
    columns are set to 0 after the Gaussian noise.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    sigmas : sequence of float or None
        Per-band sigma set of the Gaussian part (data units); None: no Gaussian part.
    fraction : (float, float)
        Column-count range as fractions of the width W.
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return the sigmas, the bands and their dead columns.

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``; ``params["deadline"]`` holds ``bands``,
        ``n_columns`` and ``columns``.

    Examples
    --------
    >>> import numpy as np
    >>> y, p = deadline(np.ones((3, 20, 20)), rng=0, return_params=True)
    >>> b = p["deadline"]["bands"][0]
    >>> bool(np.all(y[b][:, p["deadline"]["columns"][0]] == 0))
    True
    """
    arr = _check_cube(x)
    sig = _check_sigmas(sigmas)
    frac = _check_fraction_range(fraction, "fraction")
    gen = _as_rng(rng)
    out, gauss = _noniid_part(arr.astype(np.float64), sig, gen)
    bands = _pick_bands(gen, arr.shape[0])
    extra = _deadline_part(out, bands, gen, frac)
    params = {"case": "deadline", **gauss, "deadline": extra, "seed": _seed_of(rng)}
    return _finish(out, arr, params, return_params)


def impulse(
    x: np.ndarray,
    *,
    sigmas: Sequence[float] | None = NONIID_SIGMAS,
    amounts: Sequence[float] = IMPULSE_AMOUNTS,
    salt_vs_pepper: float = 0.5,
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Non-i.i.d. Gaussian noise plus salt-and-pepper noise on floor(bands/3) bands.

    Per selected band an amount is drawn from ``amounts``; each pixel is hit with that
    probability and then set to 1 (salt, probability ``salt_vs_pepper``) or 0 (pepper).

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    sigmas : sequence of float or None
        Per-band sigma set of the Gaussian part (data units); None: no Gaussian part.
    amounts : sequence of float
        Candidate fractions of pixels hit, drawn per band.
    salt_vs_pepper : float
        Probability that a hit pixel is salt (1) rather than pepper (0).
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return the sigmas, the bands and their amounts.

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``; ``params["impulse"]`` holds ``bands`` and
        ``amounts``.

    Examples
    --------
    >>> import numpy as np
    >>> y, p = impulse(np.full((3, 32, 32), 0.5), sigmas=None, rng=0, return_params=True)
    >>> p["impulse"]["amounts"][0] in (0.1, 0.3, 0.5, 0.7)
    True
    """
    arr = _check_cube(x)
    sig = _check_sigmas(sigmas)
    amt, q = _check_amounts(amounts, salt_vs_pepper)
    gen = _as_rng(rng)
    out, gauss = _noniid_part(arr.astype(np.float64), sig, gen)
    bands = _pick_bands(gen, arr.shape[0])
    extra = _impulse_part(out, bands, gen, amt, q)
    params = {"case": "impulse", **gauss, "impulse": extra, "seed": _seed_of(rng)}
    return _finish(out, arr, params, return_params)


def mixture(
    x: np.ndarray,
    *,
    sigmas: Sequence[float] | None = NONIID_SIGMAS,
    stripe_fraction: tuple[float, float] = (0.05, 0.15),
    max_offset: float = 0.25,
    deadline_fraction: tuple[float, float] = (0.05, 0.15),
    amounts: Sequence[float] = IMPULSE_AMOUNTS,
    salt_vs_pepper: float = 0.5,
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Non-i.i.d. Gaussian noise plus stripe, deadline and impulse on disjoint bands.

    One permutation of the bands is cut into three consecutive slices of
    floor(bands/3) bands: the first gets stripes, the second dead lines, the third
    impulse noise (the authors' ``AddNoiseComplex`` order), each as in :func:`stripe`,
    :func:`deadline` and :func:`impulse`.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    sigmas : sequence of float or None
        Per-band sigma set of the Gaussian part (data units); None: no Gaussian part.
    stripe_fraction, max_offset : see :func:`stripe`
        Stripe settings.
    deadline_fraction : see :func:`deadline`
        Dead-line settings.
    amounts, salt_vs_pepper : see :func:`impulse`
        Impulse settings.
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return the sigmas and, under ``stripe``, ``deadline`` and ``impulse``,
        what each drew.

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``.

    Examples
    --------
    >>> import numpy as np
    >>> y, p = mixture(np.zeros((9, 32, 32)), rng=0, return_params=True)
    >>> sets = [set(p[k]["bands"]) for k in ("stripe", "deadline", "impulse")]
    >>> [len(s) for s in sets], len(set.union(*sets))
    ([3, 3, 3], 9)
    """
    arr = _check_cube(x)
    sig = _check_sigmas(sigmas)
    s_frac = _check_fraction_range(stripe_fraction, "stripe_fraction")
    off = _check_sigma(max_offset, "max_offset")
    d_frac = _check_fraction_range(deadline_fraction, "deadline_fraction")
    amt, q = _check_amounts(amounts, salt_vs_pepper)
    gen = _as_rng(rng)
    out, gauss = _noniid_part(arr.astype(np.float64), sig, gen)
    k = arr.shape[0] // 3
    perm = gen.permutation(arr.shape[0])
    s_bands, d_bands, i_bands = (np.sort(perm[i * k : (i + 1) * k]) for i in range(3))
    params = {
        "case": "mixture",
        **gauss,
        "stripe": _stripe_part(out, s_bands, gen, s_frac, off),
        "deadline": _deadline_part(out, d_bands, gen, d_frac),
        "impulse": _impulse_part(out, i_bands, gen, amt, q),
        "seed": _seed_of(rng),
    }
    return _finish(out, arr, params, return_params)


def poisson(
    x: np.ndarray,
    peak: float = DEFAULT_PEAK,
    *,
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Poisson (shot) noise: ``Poisson(peak * x) / peak``.

    The noise variance of a voxel is ``x / peak``; larger ``peak`` means less noise.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified; must not be negative.
    peak : float
        Expected photon count of a voxel of value 1 (> 0). Default 10: noisy MPSNR
        17.5 dB on the CAVE cube of the module table.
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return ``peak``.

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``.

    Raises
    ------
    InputError
        If ``x`` has negative values or ``peak`` is not a positive finite number.

    Examples
    --------
    >>> import numpy as np
    >>> y = poisson(np.full((1, 4, 4), 0.5), peak=10, rng=0)
    >>> bool(np.all(y * 10 == np.round(y * 10)))
    True
    """
    arr = _check_cube(x)
    p = float(peak)
    if not math.isfinite(p) or p <= 0:
        raise InputError(f"peak must be a finite number > 0, got {peak!r}")
    if float(arr.min()) < 0:
        raise InputError(
            f"Poisson noise needs a non-negative cube; this one (shape {arr.shape}) has "
            f"minimum {float(arr.min()):.4g}"
        )
    gen = _as_rng(rng)
    out = gen.poisson(p * arr.astype(np.float64)) / p
    params = {"case": "poisson", "peak": p, "seed": _seed_of(rng)}
    return _finish(out, arr, params, return_params)


def speckle(
    x: np.ndarray,
    variance: float = DEFAULT_SPECKLE_VARIANCE,
    *,
    rng: RngLike = None,
    return_params: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Multiplicative speckle noise: ``x * (1 + n)``, ``n ~ N(0, variance)``.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    variance : float
        Variance of ``n`` (>= 0). Default 0.3: noisy MPSNR 18.5 dB on the CAVE cube
        of the module table, close to i.i.d. sigma 30 (18.6 dB).
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return ``variance``.

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``; may hold negative values (no clipping).
    params : dict, optional
        Only with ``return_params=True``.

    Examples
    --------
    >>> import numpy as np
    >>> y = speckle(np.zeros((1, 4, 4)), 0.3, rng=0)
    >>> bool(np.all(y == 0))
    True
    """
    arr = _check_cube(x)
    v = _check_sigma(variance, "variance")
    gen = _as_rng(rng)
    x64 = arr.astype(np.float64)
    out = x64 * (1.0 + math.sqrt(v) * gen.standard_normal(arr.shape))
    params = {"case": "speckle", "variance": v, "seed": _seed_of(rng)}
    return _finish(out, arr, params, return_params)


# ------------------------------------------------------------------------ case names
def _iid_case(sigma_x255: float) -> Callable[..., Any]:
    fn = functools.partial(gaussian_iid, sigma=sigma_x255 / 255)
    fn.__doc__ = f"i.i.d. Gaussian noise, sigma {sigma_x255:g}/255."
    return fn


#: Named cases (paper's 0-255 naming). ``iidNN`` / ``gaussianNN`` with any other
#: ``NN`` are accepted by :func:`add_noise` too.
CASES: dict[str, Callable[..., Any]] = {
    **{f"iid{s}": _iid_case(s) for s in (10, 30, 50, 70)},
    **{f"gaussian{s}": _iid_case(s) for s in (10, 30, 50, 70)},
    "blind": gaussian_blind,
    "noniid": gaussian_noniid,
    "stripe": stripe,
    "deadline": deadline,
    "impulse": impulse,
    "mixture": mixture,
    "poisson": poisson,
    "speckle": speckle,
}

_IID_RE = re.compile(r"^(?:iid|gaussian)(\d+(?:\.\d+)?)$")


def resolve_case(case: str) -> tuple[str, Callable[..., Any]]:
    """``(name, noise function)`` of a case name; :class:`InputError` listing the known ones.

    Names are case-insensitive; ``iidNN`` / ``gaussianNN`` is i.i.d. Gaussian noise of
    sigma NN on the paper's 0-255 scale (``iid30``: sigma 30/255).
    """
    if not isinstance(case, str):
        raise InputError(f"case must be a string, got {type(case).__name__}")
    name = case.strip().lower()
    if name in CASES:
        return name, CASES[name]
    match = _IID_RE.match(name)
    if match:
        return name, _iid_case(float(match.group(1)))
    known = ", ".join(sorted(CASES))
    raise InputError(
        f"unknown noise case {case!r}; known cases: {known} "
        "(and iidNN / gaussianNN for any sigma NN on the 0-255 scale)"
    )


def add_noise(
    x: np.ndarray,
    case: str,
    *,
    rng: RngLike = None,
    return_params: bool = False,
    **params: Any,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Add the named noise case to a clean cube.

    Parameters
    ----------
    x : ndarray, shape (bands, H, W)
        Clean float cube in [0, 1]; not modified.
    case : str
        A key of :data:`CASES` (``noniid``, ``mixture``, ``poisson``, ...) or
        ``iidNN`` / ``gaussianNN`` for i.i.d. Gaussian noise of sigma NN/255.
    rng : numpy.random.Generator, int or None
        Source of randomness; an int seeds :func:`numpy.random.default_rng`.
    return_params : bool
        Also return what was drawn (JSON-serialisable), with ``case`` set to ``case``.
    **params
        Overrides of the case's defaults, e.g. ``peak=5`` for ``poisson``.

    Returns
    -------
    noisy : ndarray
        Same shape and dtype as ``x``.
    params : dict, optional
        Only with ``return_params=True``.

    Raises
    ------
    InputError
        For an unknown case (the message lists the known ones) or a parameter the case
        does not take.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.full((31, 32, 32), 0.5, dtype=np.float32)
    >>> y, p = add_noise(x, "iid30", rng=0, return_params=True)
    >>> p["case"], p["sigma_x255"]
    ('iid30', 30.0)
    >>> np.array_equal(y, add_noise(x, "gaussian30", rng=0))
    True
    """
    name, fn = resolve_case(case)
    base = fn.func if isinstance(fn, functools.partial) else fn
    fixed = set(fn.keywords) if isinstance(fn, functools.partial) else set()
    accepted = [
        p
        for p in inspect.signature(base).parameters
        if p not in {"x", "rng", "return_params"} | fixed
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(
            f"noise case {name!r} takes no parameter {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or 'none'}"
        )
    noisy, drawn = fn(x, rng=rng, return_params=True, **params)
    if return_params:
        return noisy, {**drawn, "case": name}
    return noisy
