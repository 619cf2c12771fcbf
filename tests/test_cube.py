"""cube: normalise / denormalise at the float limits (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

from ras2s.cube import check_range, denormalise, normalise
from ras2s.errors import InputError


def test_check_range_refuses_what_float64_cannot_map():
    assert check_range(2.0, 6.0) == 0.25
    with pytest.raises(InputError, match="too wide"):
        check_range(-1e308, 1e308)
    with pytest.raises(InputError, match="too narrow"):
        check_range(0.0, 1e-310)


def test_denormalise_is_float64_and_clipped_to_the_dtype(rng):
    cube = 1000 + 0.001 * rng.standard_normal((3, 8, 8))
    unit, lo, hi = normalise(cube)
    back = denormalise(unit, lo, hi, np.float64)
    assert len(np.unique(back)) == back.size and np.abs(back - cube).max() < 1e-9
    big = denormalise(np.float32([[1.5, -0.5]]), -3e38, 3e38, np.float32)
    assert np.isfinite(big).all() and big.max() == np.finfo(np.float32).max
    assert denormalise(np.array([0.0, 1.2]), 0, 255, np.uint8).tolist() == [0, 255]
