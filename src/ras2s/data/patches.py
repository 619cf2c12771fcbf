"""Patch geometry: multi-scale resampling and strided patch extraction.

The paper (supplementary, "Training data") crops 100 ICVL images to 1024 x 1024 and
cuts 64 x 64 patches at scales 1, 1/2 and 1/4 with strides 64, 32 and 32 (the authors'
``create_icvl64_31`` in ``basic/utility/lmdb_data.py``), giving 53,000 patches. Along
one axis of length ``n`` a patch of side ``p`` at stride ``s`` fits
``floor((n - p) / s) + 1`` times; at scale ``k`` the side is ``floor(n * k)``
(``scipy.ndimage.zoom`` rounds the same way). For 1024 x 1024:
16 x 16 + 15 x 15 + 7 x 7 = 256 + 225 + 49 = 530 patches per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import zoom

from ..errors import InputError


def scaled_size(n: int, scale: float) -> int:
    """Side of an axis of length ``n`` resampled by ``scale`` (as ``scipy.ndimage.zoom``)."""
    return int(round(n * scale))


def _fits(n: int, patch: int, stride: int) -> int:
    return 0 if n < patch else (n - patch) // stride + 1


def patch_count(h: int, w: int, patch: int, scales: Sequence[float], strides: Sequence[int]) -> int:
    """Number of patches :func:`extract_patches` cuts from an ``h x w`` image.

    Sum over scales ``k`` with stride ``s`` of ``fits(h_k) * fits(w_k)``, where
    ``h_k = round(h k)`` and ``fits(n) = floor((n - patch) / s) + 1`` (0 when
    ``n < patch``).

    Examples
    --------
    >>> patch_count(1024, 1024, 64, (1, 0.5, 0.25), (64, 32, 32))
    530
    """
    if len(scales) != len(strides):
        raise InputError(
            f"{len(scales)} scales but {len(strides)} strides; give one stride per scale"
        )
    if patch < 1 or any(s < 1 for s in strides) or any(k <= 0 for k in scales):
        raise InputError(
            f"patch, strides and scales must be positive: {patch}, {strides}, {scales}"
        )
    return sum(
        _fits(scaled_size(h, k), patch, s) * _fits(scaled_size(w, k), patch, s)
        for k, s in zip(scales, strides, strict=True)
    )


def rescale(cube: np.ndarray, scale: float) -> np.ndarray:
    """Spatially resample ``(bands, H, W)`` by ``scale`` (cubic spline, as the authors)."""
    if scale == 1:
        return cube
    return zoom(cube, (1, scale, scale), order=3).astype(np.float32)


def extract_patches(
    cube: np.ndarray, patch: int, scales: Sequence[float], strides: Sequence[int]
) -> np.ndarray:
    """All ``patch x patch`` patches of ``(bands, H, W)`` at every scale, row-major.

    Returns an array ``(n, bands, patch, patch)`` with ``n = patch_count(H, W, ...)``.
    """
    bands, h, w = cube.shape
    n = patch_count(h, w, patch, scales, strides)
    out = np.empty((n, bands, patch, patch), dtype=np.float32)
    i = 0
    for k, s in zip(scales, strides, strict=True):
        img = rescale(cube, k)
        _, hk, wk = img.shape
        for top in range(0, hk - patch + 1, s):
            for left in range(0, wk - patch + 1, s):
                out[i] = img[:, top : top + patch, left : left + patch]
                i += 1
    assert i == n  # geometry of patch_count and this loop agree (internal invariant)
    return out
