"""The baseline denoisers, each ``f(noisy, *, sigma=None, **params) -> ndarray``.

Every function takes a noisy cube ``(bands, H, W)`` (float, about [0, 1]) and returns
a new float32 cube of the same shape; the input is never modified and the output is
not clipped. ``sigma`` is the noise standard deviation in data units: one number, one
per band, or ``None`` to estimate it per band with :func:`estimate_sigma`. Optional
packages are imported inside each function, so importing this module needs only numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ras2s.errors import InputError

from ._common import check_noisy, estimate_sigma, require, resolve_sigma, spread
from .hyres import hyres_core, regression_sigma

__all__ = ["bm3d_bands", "bm4d_cube", "hyres", "tv", "wavelet"]

SigmaLike = float | Sequence[float] | np.ndarray | None

#: Above this max/min ratio of the per-band sigmas, BM4D runs on the noise-whitened cube.
WHITEN_SPREAD = 1.25
#: TV weight per unit of noise sigma (see :func:`tv`).
TV_WEIGHT_PER_SIGMA = {"3d": 0.7, "band": 1.0}


def _check_choice(value: str, allowed: Sequence[str], what: str, method: str) -> str:
    if value not in allowed:
        raise InputError(
            f"baseline {method!r}: {what} must be one of {', '.join(map(repr, allowed))}, "
            f"got {value!r}"
        )
    return value


def bm4d_cube(
    noisy: np.ndarray,
    *,
    sigma: SigmaLike = None,
    profile: str = "np",
    whiten: str = "auto",
    num_threads: int = 1,
) -> np.ndarray:
    """BM4D (Maggioni et al. 2013) on the whole cube, via the PyPI ``bm4d`` package.

    The cube is passed as ``(H, W, bands)`` volume to ``bm4d.bm4d(z, sigma_psd)``.
    BM4D models stationary noise of one sigma; for per-band sigmas whose max/min ratio
    exceeds 1.25 (non-i.i.d. noise), ``whiten="auto"`` divides every band by its sigma,
    denoises with sigma 1 and multiplies back; otherwise it uses the RMS of the
    per-band sigmas.

    Parameters
    ----------
    noisy : ndarray, shape (bands, H, W)
        Noisy cube, float, about [0, 1].
    sigma : float, sequence of float or None
        Noise sigma in data units (one, or one per band); ``None`` estimates it.
    profile : {"np", "lc"}
        The package's normal profile or its low-complexity one (faster, a little worse).
    whiten : {"auto", "always", "never"}
        Per-band noise whitening, see above.
    num_threads : int
        Threads of the BM4D library (1: deterministic output; 0: all cores).

    Returns
    -------
    ndarray of float32, shape (bands, H, W)
    """
    cube = check_noisy(noisy, "bm4d")
    _check_choice(profile, ("np", "lc"), "profile", "bm4d")
    _check_choice(whiten, ("auto", "always", "never"), "whiten", "bm4d")
    per_band = resolve_sigma(sigma, cube, "bm4d")
    bm4d = require("bm4d", "bm4d")
    profiles = require("bm4d.profiles", "bm4d")
    if cube.shape[0] >= 5:
        pro = profiles.BM4DProfileLC() if profile == "lc" else profiles.BM4DProfile()
    else:  # the package's own choice for thin volumes: 8x8x1 blocks
        pro = profiles.BM4DProfile2D()
    pro.num_threads = int(num_threads)
    use_white = whiten == "always" or (whiten == "auto" and spread(per_band) > WHITEN_SPREAD)
    z = cube.astype(np.float64)
    if use_white:
        z = z / per_band[:, None, None]
        s = 1.0
    else:
        s = float(np.sqrt(np.mean(per_band**2)))
    out = np.asarray(bm4d.bm4d(z.transpose(1, 2, 0), s, profile=pro)).transpose(2, 0, 1)
    if use_white:
        out = out * per_band[:, None, None]
    return out.astype(np.float32)


def bm3d_bands(
    noisy: np.ndarray,
    *,
    sigma: SigmaLike = None,
    profile: str = "np",
    num_threads: int = 1,
) -> np.ndarray:
    """BM3D (Dabov et al. 2007) band by band, via the PyPI ``bm3d`` package.

    Every band is denoised alone by ``bm3d.bm3d(band, sigma_b)`` with its own sigma; no
    spectral information is used.

    Parameters
    ----------
    noisy : ndarray, shape (bands, H, W)
        Noisy cube, float, about [0, 1].
    sigma : float, sequence of float or None
        Noise sigma in data units (one, or one per band); ``None`` estimates it per band.
    profile : {"np", "lc"}
        The package's normal profile or its low-complexity one.
    num_threads : int
        Threads of the library (1: deterministic output; 0: all cores).

    Returns
    -------
    ndarray of float32, shape (bands, H, W)
    """
    cube = check_noisy(noisy, "bm3d")
    _check_choice(profile, ("np", "lc"), "profile", "bm3d")
    per_band = resolve_sigma(sigma, cube, "bm3d")
    bm3d = require("bm3d", "bm3d")
    pro = bm3d.BM3DProfileLC() if profile == "lc" else bm3d.BM3DProfile()
    pro.num_threads = int(num_threads)
    out = np.empty(cube.shape, dtype=np.float32)
    for b, (band, s) in enumerate(zip(cube.astype(np.float64), per_band, strict=True)):
        out[b] = np.asarray(bm3d.bm3d(band, float(s), profile=pro)).reshape(band.shape)
    return out


def tv(
    noisy: np.ndarray,
    *,
    sigma: SigmaLike = None,
    mode: str = "3d",
    weight: float | None = None,
    weight_per_sigma: float | None = None,
    max_num_iter: int = 200,
) -> np.ndarray:
    """Total-variation denoising (Chambolle 2004) with scikit-image.

    ``skimage.restoration.denoise_tv_chambolle``. ``mode="3d"`` treats the cube as one
    volume (isotropic TV over rows, columns and bands, which uses the spectral
    smoothness); ``mode="band"`` denoises each band alone.

    Weight rule: ``weight = weight_per_sigma * sigma`` with default ``weight_per_sigma``
    0.7 (``3d``) and 1.0 (``band``), the best of a sweep over 0.3-3.0 on a 64 x 64
    crop of the CAVE scene chart_and_stuffed_toy (not used in the comparisons) at
    i.i.d. sigma 30/255 and non-i.i.d. noise.
    In ``3d`` mode ``sigma`` is the RMS of the per-band sigmas; in ``band`` mode each
    band gets its own weight.

    Parameters
    ----------
    noisy : ndarray, shape (bands, H, W)
        Noisy cube, float, about [0, 1].
    sigma : float, sequence of float or None
        Noise sigma in data units; ``None`` estimates it per band.
    mode : {"3d", "band"}
        See above.
    weight : float, optional
        Fixed TV weight (overrides the rule; sigma is then not used).
    weight_per_sigma : float, optional
        The factor of the rule.
    max_num_iter : int
        Chambolle iterations at most.

    Returns
    -------
    ndarray of float32, shape (bands, H, W)
    """
    cube = check_noisy(noisy, "tv")
    _check_choice(mode, ("3d", "band"), "mode", "tv")
    restoration = require("skimage.restoration", "tv")
    factor = TV_WEIGHT_PER_SIGMA[mode] if weight_per_sigma is None else float(weight_per_sigma)
    if weight is not None:
        per_band = np.full(cube.shape[0], float(weight))
    else:
        per_band = factor * resolve_sigma(sigma, cube, "tv")
    data = cube.astype(np.float64)
    if mode == "3d":
        w = float(np.sqrt(np.mean(per_band**2)))
        out = restoration.denoise_tv_chambolle(data, weight=w, max_num_iter=max_num_iter)
    else:
        out = np.stack(
            [
                restoration.denoise_tv_chambolle(b, weight=float(w), max_num_iter=max_num_iter)
                for b, w in zip(data, per_band, strict=True)
            ]
        )
    return out.astype(np.float32)


def wavelet(
    noisy: np.ndarray,
    *,
    sigma: SigmaLike = None,
    wavelet_name: str = "db1",
    levels: int | None = None,
    threshold_mode: str = "soft",
) -> np.ndarray:
    """Wavelet shrinkage band by band: BayesShrink (Chang et al. 2000) with scikit-image.

    ``skimage.restoration.denoise_wavelet(band, sigma=sigma_b, wavelet=..., mode=...,
    method="BayesShrink", rescale_sigma=True)`` on each band with its own sigma.

    Parameters
    ----------
    noisy : ndarray, shape (bands, H, W)
        Noisy cube, float, about [0, 1].
    sigma : float, sequence of float or None
        Noise sigma in data units; ``None`` estimates it per band.
    wavelet_name : str
        PyWavelets wavelet (default Haar ``db1``, scikit-image's default; it scored
        about 2 dB above ``db2``/``sym4`` on the tuning scene).
    levels : int, optional
        Decomposition levels (default: scikit-image's, 3 below the maximum).
    threshold_mode : {"soft", "hard"}
        Thresholding.

    Returns
    -------
    ndarray of float32, shape (bands, H, W)
    """
    cube = check_noisy(noisy, "wavelet")
    _check_choice(threshold_mode, ("soft", "hard"), "threshold_mode", "wavelet")
    per_band = resolve_sigma(sigma, cube, "wavelet")
    restoration = require("skimage.restoration", "wavelet")
    require("pywt", "wavelet")
    out = np.stack(
        [
            restoration.denoise_wavelet(
                b,
                sigma=float(s),
                wavelet=wavelet_name,
                mode=threshold_mode,
                wavelet_levels=levels,
                method="BayesShrink",
                rescale_sigma=True,
            )
            for b, s in zip(cube.astype(np.float64), per_band, strict=True)
        ]
    )
    return out.astype(np.float32)


def hyres(
    noisy: np.ndarray,
    *,
    sigma: SigmaLike = None,
    noise_estimator: str = "mad",
    wavelet_name: str = "db2",
    levels: int | None = None,
    rank: int | None = None,
) -> np.ndarray:
    """HyRes (Rasti, Ulfarsson and Ghamisi 2017): low rank + wavelet sparsity, SURE-tuned.

    The noise-whitened cube is projected on its singular vectors; every component's
    orthonormal wavelet detail coefficients are soft-thresholded at the SURE-optimal
    threshold, and the rank is the one with the least total SURE. See
    :mod:`ras2s.baselines.hyres` for the model and what is simplified.

    Parameters
    ----------
    noisy : ndarray, shape (bands, H, W)
        Noisy cube, float, about [0, 1].
    sigma : float, sequence of float or None
        Noise sigma in data units; ``None`` estimates it per band.
    noise_estimator : {"mad", "regression"}
        Estimator used when ``sigma`` is None: wavelet MAD (:func:`estimate_sigma`,
        default) or HySime's multiple regression, as the paper (it over-estimates the
        noise of textured scenes with few bands).
    wavelet_name : str
        Orthogonal PyWavelets wavelet.
    levels : int, optional
        Decomposition levels (default: as many as fit, at most 4).
    rank : int, optional
        Fixed rank instead of the SURE choice.

    Returns
    -------
    ndarray of float32, shape (bands, H, W)
    """
    cube = check_noisy(noisy, "hyres")
    _check_choice(noise_estimator, ("mad", "regression"), "noise_estimator", "hyres")
    if sigma is None and noise_estimator == "regression" and cube.shape[0] >= 2:
        per_band = resolve_sigma(regression_sigma(cube), cube, "hyres")
    else:
        per_band = resolve_sigma(
            sigma if sigma is not None else estimate_sigma(cube), cube, "hyres"
        )
    out, _ = hyres_core(cube, per_band, wavelet=wavelet_name, levels=levels, rank=rank)
    return out.astype(np.float32)
