"""On-the-fly training noise and band crops; the learning-rate and noise schedules."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..noise import add_noise

#: The authors' ``complex`` training noise: non-i.i.d. Gaussian, then one of nothing,
#: impulse, stripe, dead lines (each case below already includes the Gaussian part).
COMPLEX_CASES = ("noniid", "impulse", "stripe", "deadline")


def noise_kind_at(progress: float, stages: Sequence[tuple[float, str]]) -> str:
    """The noise kind of the last stage whose start fraction is <= ``progress``."""
    kind = stages[0][1]
    for start, name in stages:
        if progress >= start:
            kind = name
    return kind


def lr_factor_at(progress: float, milestones: Sequence[float], factors: Sequence[float]) -> float:
    """Multiplier of the base lr: factor of the last milestone passed (1 before any)."""
    factor = 1.0
    for milestone, value in zip(milestones, factors, strict=True):
        if progress >= milestone - 1e-12:
            factor = value
    return factor


def cooldown_factor_at(step: int, total: int, cooldown_steps: int, final: float) -> float:
    """Linear cooldown multiplier: 1 until ``total - cooldown_steps``, then down to ``final``.

    ``step`` counts optimiser steps done (0-based); the last step of a run of ``total``
    steps (``step = total - 1``) runs at ``final + (1 - final) / cooldown_steps``, never at
    exactly ``final``, so no step is wasted at a zero learning rate.
    """
    if cooldown_steps <= 0:
        return 1.0
    remaining = total - step
    if remaining >= cooldown_steps:
        return 1.0
    return final + (1.0 - final) * max(remaining, 0) / cooldown_steps


def sample_case(kind: str, rng: np.random.Generator) -> str:
    """The :func:`ras2s.add_noise` case of one training sample under ``kind``.

    ``complex`` draws one of :data:`COMPLEX_CASES` uniformly; kinds joined by ``+``
    (``complex+blind``) first draw one of their parts uniformly; any other kind is the
    case itself (no draw).
    """
    if "+" in kind:
        parts = kind.split("+")
        kind = parts[int(rng.integers(len(parts)))]
    if kind == "complex":
        return COMPLEX_CASES[int(rng.integers(len(COMPLEX_CASES)))]
    return kind


def noisy_batch(clean: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Noise every sample ``(bands, H, W)`` of ``clean`` ``(N, bands, H, W)`` in [0, 1].

    Each sample gets the case :func:`sample_case` draws for ``kind``.
    """
    out = np.empty_like(clean)
    with warnings.catch_warnings():
        # Patches cover a sub-range of their normalised cube, and cubic resampling can
        # overshoot [0, 1] slightly: expected here, so not worth a warning per sample.
        warnings.filterwarnings("ignore", message="noise models expect a cube in")
        for i, sample in enumerate(clean):
            out[i] = add_noise(sample, sample_case(kind, rng), rng=rng)
    return out


def crop_bands(clean: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Cut ``(N, B, H, W)`` to ``(N, k, H, W)``: ``k`` consecutive bands per sample.

    ``k`` is drawn once for the batch, uniformly from ``lo .. min(hi, B)``; each sample
    gets its own window offset. A store with fewer than ``lo`` bands is an error.
    """
    n, bands = clean.shape[:2]
    if bands < lo:
        raise InputError(f"band_crop needs at least {lo} bands per patch, the store has {bands}")
    k = int(rng.integers(lo, min(hi, bands) + 1))
    starts = rng.integers(0, bands - k + 1, size=n)
    return np.stack([sample[s : s + k] for sample, s in zip(clean, starts, strict=True)])


def intensity_draws(
    n: int,
    scale: tuple[float, float],
    offset: tuple[float, float],
    prob: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scales, offsets)``, float64 ``(n,)``: the per-sample map of :func:`map_intensity`.

    With probability ``prob`` per sample, ``scale`` is drawn log-uniformly from
    ``scale = (lo, hi)`` and ``offset`` uniformly from ``offset = (lo, hi)``; the other
    samples get scale 1 and offset 0. Every draw is made for every sample (whether
    mapped or not), so the generator's state after the call does not depend on the
    outcomes.
    """
    keep = rng.random(n) >= prob
    scales = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), n))
    offsets = rng.uniform(offset[0], offset[1], n)
    scales[keep], offsets[keep] = 1.0, 0.0
    return scales, offsets


def apply_intensity(clean: np.ndarray, scales: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``offsets[i] + scales[i] * clean[i]`` for each sample of ``(N, B, H, W)``, float32."""
    shape = (clean.shape[0],) + (1,) * (clean.ndim - 1)
    return (offsets.reshape(shape) + scales.reshape(shape) * clean).astype(np.float32)


def map_intensity(
    clean: np.ndarray,
    scale: tuple[float, float],
    offset: tuple[float, float],
    prob: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Map each sample of ``clean`` ``(N, B, H, W)`` to ``offset + scale * x``, float32.

    The per-sample ``scale`` and ``offset`` are :func:`intensity_draws` from ``rng``.
    """
    draws = intensity_draws(clean.shape[0], scale, offset, prob, rng)
    return apply_intensity(clean, *draws)
