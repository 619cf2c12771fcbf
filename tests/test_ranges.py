"""The clean-range estimate behind ``normalise="clean"``."""

from __future__ import annotations

import numpy as np
import pytest

from ras2s import add_noise
from ras2s.ranges import clean_range


def _scene(bands: int = 31, size: int = 96) -> np.ndarray:
    """A smooth synthetic scene spanning exactly [0, 1]: blobs whose spectra vary slowly."""
    y, x = np.mgrid[0:size, 0:size] / size
    wl = np.linspace(0, 1, bands)[:, None, None]
    scene = (
        0.5 * np.exp(-((x - 0.3) ** 2 + (y - 0.4) ** 2) / 0.02) * (1 - 0.5 * wl)
        + 0.4 * np.exp(-((x - 0.7) ** 2 + (y - 0.6) ** 2) / 0.05) * (0.5 + 0.5 * wl)
        + 0.1 * (x + y)
    )
    return ((scene - scene.min()) / (scene.max() - scene.min())).astype(np.float32)


@pytest.mark.parametrize("case", ["noniid", "iid50", "stripe", "deadline", "impulse", "mixture"])
def test_the_estimate_sees_through_every_noise_case(case):
    clean = _scene()
    noisy = add_noise(clean, case, rng=7)
    lo, hi = clean_range(noisy)
    # the clean cube spans [0, 1]; the noisy one far more
    assert noisy.min() < -0.3 and noisy.max() > 1.3
    # within 0.25 of the clean range (the worst here: the darkest pixel sits in a corner
    # of the first band, where the padded filters and the edge band average least), and
    # within a third of min-max's error
    assert abs(lo) < min(0.25, -noisy.min() / 3), (lo, noisy.min())
    assert abs(hi - 1) < min(0.1, (noisy.max() - 1) / 3), (hi, noisy.max())


def test_a_clean_cube_keeps_nearly_its_own_range():
    clean = _scene()
    lo, hi = clean_range(clean)
    assert 0 <= lo < 0.02 and 0.95 < hi <= 1  # the smoothing clips a narrow peak a little


def test_the_estimate_follows_the_units():
    noisy = add_noise(_scene(), "mixture", rng=3).astype(np.float64)
    lo, hi = clean_range(noisy)
    lo2, hi2 = clean_range(noisy * 5000 + 300)
    assert lo2 == pytest.approx(lo * 5000 + 300, abs=1e-6) and hi2 == pytest.approx(
        hi * 5000 + 300, abs=1e-6
    )
    ilo, ihi = clean_range(np.rint(noisy * 5000 + 300).astype(np.int32))  # integer input
    assert (ilo - 300) / 5000 == pytest.approx(lo, abs=1e-3)
    assert (ihi - 300) / 5000 == pytest.approx(hi, abs=1e-3)


def test_one_or_two_bands_and_tiny_images():
    noisy = add_noise(_scene(bands=2, size=40), "noniid", rng=1)
    lo, hi = clean_range(noisy)
    assert lo < hi
    assert clean_range(noisy[:1])[0] < clean_range(noisy[:1])[1]
    tiny = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    lo, hi = clean_range(tiny)
    assert 0 <= lo <= hi <= 11


def test_a_band_reader_replaces_the_cube_bands():
    noisy = add_noise(_scene(), "noniid", rng=2)
    holed = noisy.copy()
    holed[4, 10:20, 10:20] = np.nan
    filled = lambda b: np.where(np.isfinite(holed[b]), holed[b], 0.5)  # noqa: E731
    lo, hi = clean_range(holed, filled)
    assert np.isfinite(lo) and np.isfinite(hi)
    assert (lo, hi) == pytest.approx(clean_range(np.stack([filled(b) for b in range(31)])))


@pytest.mark.parametrize("threads", [2, 3])
def test_the_estimate_on_threads_equals_one_thread_exactly(threads):
    noisy = add_noise(_scene(bands=12, size=48), "mixture", rng=5)
    assert clean_range(noisy, threads=threads) == clean_range(noisy)
    # a block hitting only the first band of the second group: its median of three
    # with its true neighbours removes it, as on one thread
    flat = np.full((8, 24, 24), 0.5)
    flat[4, 6:18, 6:18] = 5.0
    assert clean_range(flat, threads=2) == clean_range(flat) == pytest.approx((0.5, 0.5))
