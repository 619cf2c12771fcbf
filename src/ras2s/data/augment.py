"""Geometric and spectral augmentation of one patch ``(bands, H, W)``."""

from __future__ import annotations

import numpy as np


def augment(
    patch: np.ndarray, rng: np.random.Generator, *, spectral_flip: bool = False
) -> np.ndarray:
    """Random flip + 90-degree rotation (the 8 dihedral transforms), optional band reversal.

    The input is not modified; the output is a new C-contiguous array.
    """
    out = np.rot90(patch, k=int(rng.integers(4)), axes=(1, 2))
    if rng.integers(2):
        out = out[:, :, ::-1]
    if spectral_flip and rng.integers(2):
        out = out[::-1]
    return np.ascontiguousarray(out)
