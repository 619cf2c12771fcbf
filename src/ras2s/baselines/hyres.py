"""HyRes: low-rank + wavelet-sparse hyperspectral restoration tuned by SURE.

Implemented from the paper (no code of the authors used):

    B. Rasti, M. O. Ulfarsson and P. Ghamisi, "Automatic Hyperspectral Image
    Restoration Using Sparse and Low-Rank Modeling", IEEE Geoscience and Remote
    Sensing Letters 14(12), 2335-2339, 2017. doi:10.1109/LGRS.2017.2764059

Model: the noise-whitened cube, as a pixels x bands matrix, is ``Y = D W V^T + N``
with ``D`` an orthonormal 2-D wavelet synthesis, ``V`` the first ``r`` right singular
vectors of ``Y`` and ``W`` sparse. The penalised least-squares problem
``min_W ||Y - D W V^T||_F^2 / 2 + sum_i lambda_i ||w_i||_1`` separates per component
and is solved in closed form by soft thresholding ``D^T Y v_i`` at ``lambda_i``. Both
the rank ``r`` and every ``lambda_i`` are chosen by minimising Stein's unbiased risk
estimate (SURE), so the method has no tuning parameter.

Simplifications against the paper (stated in ``docs/baselines.md`` too):

- wavelet: Daubechies-2, orthonormal (PyWavelets ``periodization`` mode), at most 4
  levels; bands are padded symmetrically to a multiple of ``2**levels`` and cropped
  back (the padded border makes the noise slightly non-white there);
- the approximation (coarsest low-pass) coefficients are kept, not thresholded; only
  detail coefficients are soft-thresholded, with one ``lambda_i`` per component;
- noise whitening uses a diagonal noise covariance: per-band sigmas from the
  multiple-regression estimator of HySime (Bioucas-Dias and Nascimento 2008, as the
  paper does) unless ``sigma`` is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import require

__all__ = ["hyres_core", "regression_sigma", "sure_soft"]


def regression_sigma(cube: np.ndarray, *, small: float = 1e-6) -> np.ndarray:
    """Per-band noise sigma by HySime's multiple-regression estimator.

    Every band is regressed (least squares, no intercept) on all the other bands; the
    residual's RMS is that band's noise level (Bioucas-Dias and Nascimento 2008,
    "Hyperspectral subspace identification", IEEE TGRS 46(8), ``estNoise``).

    Parameters
    ----------
    cube : ndarray, shape (bands, H, W)
        Noisy cube.
    small : float
        Ridge term added to the band correlation matrix before inversion.

    Returns
    -------
    ndarray of float64, shape (bands,)
    """
    bands = cube.shape[0]
    y = cube.reshape(bands, -1).astype(np.float64)
    if bands < 2:
        raise ValueError("the regression estimator needs at least 2 bands")
    rr = y @ y.T
    rri = np.linalg.inv(rr + small * np.eye(bands))
    resid = np.empty_like(y)
    for i in range(bands):
        xx = rri - np.outer(rri[:, i], rri[i, :]) / rri[i, i]
        rra = rr[:, i].copy()
        rra[i] = 0.0
        beta = xx @ rra
        beta[i] = 0.0
        resid[i] = y[i] - beta @ y
    return np.sqrt(np.mean(resid * resid, axis=1))


def sure_soft(coeffs: np.ndarray) -> tuple[float, float]:
    """Best soft threshold of unit-variance noisy coefficients by SURE.

    ``SURE(t) = n - 2 #{|c| <= t} + sum min(c^2, t^2)`` (Donoho and Johnstone 1995),
    minimised over ``t`` in ``{0} U {|c_j|}``.

    Parameters
    ----------
    coeffs : ndarray
        Coefficients ``theta + noise`` with noise N(0, 1).

    Returns
    -------
    threshold, risk : float, float
        The minimising threshold and its SURE value.
    """
    a = np.sort(np.abs(coeffs.ravel()))
    n = a.size
    if n == 0:
        return 0.0, 0.0
    a2 = a * a
    j = np.arange(n)
    risk = n - 2.0 * (j + 1) + np.cumsum(a2) + (n - j - 1) * a2
    best = int(np.argmin(risk))
    if risk[best] < n:  # t = 0 (keep everything) scores n
        return float(a[best]), float(risk[best])
    return 0.0, float(n)


def hyres_core(
    cube: np.ndarray,
    sigma: np.ndarray,
    *,
    wavelet: str = "db2",
    levels: int | None = None,
    rank: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run HyRes on a float cube with known per-band sigma.

    Parameters
    ----------
    cube : ndarray, shape (bands, H, W)
        Noisy cube (float).
    sigma : ndarray, shape (bands,)
        Noise sigma of every band, > 0.
    wavelet : str
        Orthogonal PyWavelets wavelet.
    levels : int, optional
        Decomposition levels (default: as many as fit, at most 4).
    rank : int, optional
        Fix the rank instead of choosing it by SURE.

    Returns
    -------
    restored : ndarray of float64, shape (bands, H, W)
    info : dict
        ``rank``, ``levels``, ``thresholds`` (per kept component, whitened units).
    """
    pywt = require("pywt", "hyres")
    bands, h, w = cube.shape
    wav = pywt.Wavelet(wavelet)
    if not wav.orthogonal:
        raise ValueError(f"hyres needs an orthogonal wavelet, got {wavelet!r}")
    if levels is None:
        levels = max(1, min(4, pywt.dwt_max_level(min(h, w), wav.dec_len)))
    step = 2**levels
    ph, pw = -h % step, -w % step

    # 1. noise whitening and the spectral subspace (SVD of pixels x bands)
    yw = (cube.astype(np.float64) / sigma[:, None, None]).reshape(bands, -1).T
    _, _, vt = np.linalg.svd(yw, full_matrices=False)
    v = vt.T  # bands x bands, orthonormal columns
    pcs = (yw @ v).T.reshape(-1, h, w)

    # 2. per component: orthonormal DWT, SURE threshold, risk of keeping vs dropping
    kept_risk, dropped_risk, thresholds, decomps = [], [], [], []
    for pc in pcs:
        padded = np.pad(pc, ((0, ph), (0, pw)), mode="symmetric")
        coeffs = pywt.wavedec2(padded, wav, mode="periodization", level=levels)
        details = np.concatenate([d.ravel() for level in coeffs[1:] for d in level])
        n_all = padded.size
        t, risk = sure_soft(details)
        kept_risk.append(coeffs[0].size + risk)  # approximation kept: risk = its size
        dropped_risk.append(float(np.sum(padded * padded)) - n_all)
        thresholds.append(t)
        decomps.append(coeffs)
    kept = np.asarray(kept_risk)
    dropped = np.asarray(dropped_risk)

    # 3. rank by SURE: first r components estimated, the rest set to zero
    if rank is None:
        total = np.array([kept[:r].sum() + dropped[r:].sum() for r in range(1, bands + 1)])
        rank = int(np.argmin(total)) + 1
    rank = int(min(max(rank, 1), bands))

    # 4. reconstruct the kept components and undo the whitening
    est = np.zeros((rank, h, w))
    for i in range(rank):
        coeffs = decomps[i]
        t = thresholds[i]
        shrunk = [coeffs[0]] + [
            tuple(pywt.threshold(d, t, mode="soft") for d in level) for level in coeffs[1:]
        ]
        est[i] = pywt.waverec2(shrunk, wav, mode="periodization")[:h, :w]
    xw = est.reshape(rank, -1).T @ v[:, :rank].T  # pixels x bands
    restored = xw.T.reshape(bands, h, w) * sigma[:, None, None]
    info = {"rank": rank, "levels": levels, "thresholds": [round(x, 4) for x in thresholds[:rank]]}
    return restored, info
