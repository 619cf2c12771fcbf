"""Tests of ras2s.noise: statistics of every case, determinism, params, errors."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ras2s import noise
from ras2s.errors import InputError
from ras2s.noise import (
    CASES,
    NONIID_SIGMAS,
    add_noise,
    deadline,
    gaussian_blind,
    gaussian_iid,
    gaussian_noniid,
    impulse,
    mixture,
    poisson,
    speckle,
    stripe,
)

BANDS, H, W = 31, 128, 128
REL = 0.05  # relative tolerance on a per-band std estimated from 128 x 128 samples


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def clean(rng: np.random.Generator) -> np.ndarray:
    """A float32 cube in [0.2, 0.8], so salt (1) and pepper (0) are recognisable."""
    return rng.uniform(0.2, 0.8, size=(BANDS, H, W)).astype(np.float32)


def _diff(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    return noisy.astype(np.float64) - clean.astype(np.float64)


def _check_band_stds(diff: np.ndarray, sigmas: list[float], bands: list[int] | range) -> None:
    for b in bands:
        assert diff[b].std() == pytest.approx(sigmas[b], rel=REL), f"band {b}"
        assert abs(diff[b].mean()) < 5 * sigmas[b] / math.sqrt(diff[b].size)


# ------------------------------------------------------------------ Gaussian cases
def test_gaussian_iid_std_matches_sigma(clean: np.ndarray) -> None:
    noisy, params = gaussian_iid(clean, 30 / 255, rng=0, return_params=True)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    _check_band_stds(_diff(noisy, clean), [30 / 255] * BANDS, range(BANDS))
    assert params["sigma"] == pytest.approx(30 / 255)
    assert params["sigma_x255"] == pytest.approx(30)


def test_gaussian_iid_zero_sigma_is_identity(clean: np.ndarray) -> None:
    assert np.array_equal(gaussian_iid(clean, 0.0, rng=0), clean)


def test_gaussian_blind_draws_one_sigma_in_range(clean: np.ndarray) -> None:
    drawn = []
    for seed in range(5):
        noisy, params = gaussian_blind(clean, rng=seed, return_params=True)
        s = params["sigma"]
        assert 10 / 255 <= s <= 70 / 255
        assert params["sigma_x255"] == pytest.approx(s * 255)
        _check_band_stds(_diff(noisy, clean), [s] * BANDS, range(BANDS))
        drawn.append(s)
    assert len(set(drawn)) == 5


def test_gaussian_blind_rejects_inverted_range(clean: np.ndarray) -> None:
    with pytest.raises(InputError, match="low <= high"):
        gaussian_blind(clean, (0.3, 0.1), rng=0)


def test_gaussian_noniid_per_band_sigma(clean: np.ndarray) -> None:
    noisy, params = gaussian_noniid(clean, rng=1, return_params=True)
    sig = params["sigma_per_band"]
    assert len(sig) == BANDS
    assert set(np.round(np.array(sig) * 255, 6)) <= {10, 30, 50, 70}
    assert len(set(sig)) > 1
    assert params["sigma_per_band_x255"] == pytest.approx([s * 255 for s in sig])
    _check_band_stds(_diff(noisy, clean), sig, range(BANDS))


# -------------------------------------------------------------- stripe / deadline
def test_stripe_exact_columns_without_gaussian(clean: np.ndarray) -> None:
    noisy, params = stripe(clean, sigmas=None, rng=3, return_params=True)
    info = params["stripe"]
    diff = _diff(noisy, clean)
    bands = info["bands"]
    assert len(bands) == BANDS // 3 == len(set(bands))
    untouched = sorted(set(range(BANDS)) - set(bands))
    assert np.all(diff[untouched] == 0)
    lo, hi = math.floor(0.05 * W), math.floor(0.15 * W)
    for b, n, cols, offs in zip(
        bands, info["n_columns"], info["columns"], info["offsets"], strict=True
    ):
        assert lo <= n < hi
        assert len(cols) == len(set(cols)) == n == len(offs)
        assert all(-0.25 <= o <= 0.25 for o in offs)
        changed = np.flatnonzero(np.any(diff[b] != 0, axis=0))
        assert set(changed) == set(cols)
        # the whole column moves by its own offset (float32 rounding of the result)
        np.testing.assert_allclose(diff[b][:, cols], np.broadcast_to(offs, (H, n)), atol=1e-6)


def test_stripe_with_gaussian(clean: np.ndarray) -> None:
    noisy, params = stripe(clean, rng=4, return_params=True)
    info = params["stripe"]
    sig = params["sigma_per_band"]
    diff = _diff(noisy, clean)
    _check_band_stds(diff, sig, sorted(set(range(BANDS)) - set(info["bands"])))
    for b, cols, offs in zip(info["bands"], info["columns"], info["offsets"], strict=True):
        col_means = diff[b][:, cols].mean(axis=0)
        np.testing.assert_allclose(col_means, offs, atol=5 * sig[b] / math.sqrt(H))


def test_deadline_columns_zeroed(clean: np.ndarray) -> None:
    noisy, params = deadline(clean, rng=5, return_params=True)
    info = params["deadline"]
    assert len(info["bands"]) == BANDS // 3
    lo, hi = math.ceil(0.05 * W), math.ceil(0.15 * W)
    for b, n, cols in zip(info["bands"], info["n_columns"], info["columns"], strict=True):
        assert lo <= n < hi
        assert len(set(cols)) == n
        assert np.all(noisy[b][:, cols] == 0)
        others = np.setdiff1d(np.arange(W), cols)
        assert np.all(noisy[b][:, others] != 0)  # Gaussian noise everywhere else
    diff = _diff(noisy, clean)
    _check_band_stds(diff, params["sigma_per_band"], sorted(set(range(BANDS)) - set(info["bands"])))


@pytest.mark.parametrize("width", [1, 2, 5, 6, 7, 10, 13, 19, 20, 21, 26, 40, 67])
@pytest.mark.parametrize("fn", [stripe, deadline, mixture])
def test_narrow_widths_never_crash(fn, width: int) -> None:
    x = np.full((6, 3, width), 0.5)
    _, params = fn(x, rng=width, return_params=True)
    kinds = [k for k in ("stripe", "deadline") if k in params]
    for kind in kinds:
        rounding = math.floor if kind == "stripe" else math.ceil
        lo, hi = rounding(0.05 * width), rounding(0.15 * width)
        for n, cols in zip(params[kind]["n_columns"], params[kind]["columns"], strict=True):
            assert 1 <= n <= width and len(set(cols)) == n
            assert all(0 <= c < width for c in cols)
            if lo < hi and lo >= 1:  # the authors' range is usable: follow it exactly
                assert lo <= n < hi
            else:  # empty (or zero-only) range: one column, documented
                assert n == max(1, lo)


# ------------------------------------------------------------------------ impulse
def test_impulse_fraction_and_salt_ratio(clean: np.ndarray) -> None:
    noisy, params = impulse(clean, sigmas=None, rng=6, return_params=True)
    info = params["impulse"]
    assert len(info["bands"]) == BANDS // 3
    untouched = sorted(set(range(BANDS)) - set(info["bands"]))
    assert np.array_equal(noisy[untouched], clean[untouched])
    for b, amount in zip(info["bands"], info["amounts"], strict=True):
        assert amount in (0.1, 0.3, 0.5, 0.7)
        salt = noisy[b] == 1
        pepper = noisy[b] == 0
        hit = salt | pepper
        assert hit.mean() == pytest.approx(amount, abs=0.02)
        assert salt.sum() / hit.sum() == pytest.approx(0.5, abs=0.05)
        assert np.array_equal(noisy[b][~hit], clean[b][~hit])


def test_impulse_salt_only(clean: np.ndarray) -> None:
    noisy, params = impulse(
        clean, sigmas=None, amounts=(0.3,), salt_vs_pepper=1.0, rng=7, return_params=True
    )
    for b in params["impulse"]["bands"]:
        assert not np.any(noisy[b] == 0)
        assert (noisy[b] == 1).mean() == pytest.approx(0.3, abs=0.02)


# ------------------------------------------------------------------------ mixture
def test_mixture_disjoint_band_sets(clean: np.ndarray) -> None:
    noisy, params = mixture(clean, rng=8, return_params=True)
    sets = [set(params[k]["bands"]) for k in ("stripe", "deadline", "impulse")]
    assert [len(s) for s in sets] == [BANDS // 3] * 3
    assert len(set.union(*sets)) == 3 * (BANDS // 3)
    for b, cols in zip(params["deadline"]["bands"], params["deadline"]["columns"], strict=True):
        assert np.all(noisy[b][:, cols] == 0)
    for b, amount in zip(params["impulse"]["bands"], params["impulse"]["amounts"], strict=True):
        assert np.isin(noisy[b], (0.0, 1.0)).mean() == pytest.approx(amount, abs=0.02)
    plain = sorted(set(range(BANDS)) - set.union(*sets))
    _check_band_stds(_diff(noisy, clean), params["sigma_per_band"], plain)


@pytest.mark.parametrize("fn", [stripe, deadline, impulse, mixture])
@pytest.mark.parametrize("bands", [1, 2])
def test_fewer_than_three_bands_is_plain_noniid(fn, bands: int) -> None:
    x = np.random.default_rng(0).random((bands, 16, 32))
    out, params = fn(x, rng=9, return_params=True)
    assert np.array_equal(out, gaussian_noniid(x, rng=9))
    for kind in ("stripe", "deadline", "impulse"):
        if kind in params:
            assert params[kind]["bands"] == []


# --------------------------------------------------------------- Poisson / speckle
LEVELS = (0.05, 0.2, 0.5, 0.9)


def _levels_cube() -> np.ndarray:
    return np.broadcast_to(np.array(LEVELS)[:, None, None], (len(LEVELS), 160, 160)).copy()


def test_poisson_variance_is_signal_over_peak() -> None:
    x = _levels_cube()
    peak = 20.0
    y = poisson(x, peak, rng=10)
    for b, level in enumerate(LEVELS):
        assert y[b].mean() == pytest.approx(level, rel=0.03)
        assert y[b].var() == pytest.approx(level / peak, rel=0.05)
    np.testing.assert_allclose(y * peak, np.round(y * peak), atol=1e-9)


def test_poisson_rejects_negative_input_and_bad_peak() -> None:
    x = _levels_cube()
    x[0, 0, 0] = -0.01
    with pytest.raises(InputError, match="non-neg"):
        poisson(x, 10, rng=0)
    with pytest.raises(InputError, match="peak"):
        poisson(_levels_cube(), 0, rng=0)


def test_speckle_variance_is_x_squared_times_variance() -> None:
    x = _levels_cube()
    var = 0.3
    y = speckle(x, var, rng=11)
    for b, level in enumerate(LEVELS):
        assert y[b].mean() == pytest.approx(level, rel=0.03)
        assert y[b].var() == pytest.approx(level**2 * var, rel=0.05)
    assert np.all(speckle(np.zeros((2, 8, 8)), var, rng=0) == 0)


def test_defaults_of_unseen_cases() -> None:
    _, p = add_noise(_levels_cube(), "poisson", rng=0, return_params=True)
    assert p["peak"] == noise.DEFAULT_PEAK == 10
    _, p = add_noise(_levels_cube(), "speckle", rng=0, return_params=True)
    assert p["variance"] == noise.DEFAULT_SPECKLE_VARIANCE == 0.3


# ------------------------------------------------------------------- determinism
ALL_CASES = sorted(CASES)


@pytest.mark.parametrize("case", ALL_CASES)
def test_same_seed_same_noise_other_seed_other_noise(case: str) -> None:
    x = np.random.default_rng(0).uniform(0.1, 0.9, (7, 24, 40)).astype(np.float32)
    a, pa = add_noise(x, case, rng=42, return_params=True)
    b, pb = add_noise(x, case, rng=np.random.default_rng(42), return_params=True)
    c = add_noise(x, case, rng=43)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    pa.pop("seed"), pb.pop("seed")
    assert pa == pb
    json.dumps(pa)  # params are JSON-serialisable


@pytest.mark.parametrize("case", ALL_CASES)
def test_dtype_kept_and_noise_independent_of_dtype(case: str) -> None:
    x64 = np.random.default_rng(1).uniform(0.1, 0.9, (6, 16, 20))
    x32 = x64.astype(np.float32)
    y64 = add_noise(x64, case, rng=3)
    y32 = add_noise(x32, case, rng=3)
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=1e-6)


def test_params_record_integer_seed(clean: np.ndarray) -> None:
    _, p = add_noise(clean[:3], "noniid", rng=17, return_params=True)
    assert p["seed"] == 17 and p["case"] == "noniid"
    _, p = add_noise(clean[:3], "noniid", rng=np.random.default_rng(17), return_params=True)
    assert p["seed"] is None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    case=st.sampled_from(ALL_CASES),
    shape=st.tuples(st.integers(1, 7), st.integers(1, 12), st.integers(1, 30)),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_input_never_modified(case: str, shape: tuple[int, int, int], dtype, seed: int) -> None:
    x = np.random.default_rng(seed).random(shape).astype(dtype)
    before = x.copy()
    y = add_noise(x, case, rng=seed)
    assert np.array_equal(x, before)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y is not x and not np.shares_memory(x, y)


# ------------------------------------------------------------------ case names
def test_iid_names_any_level() -> None:
    x = np.full((2, 64, 64), 0.5)
    for name in ("iid25", "gaussian25", "IID25", "iid12.5"):
        _, p = add_noise(x, name, rng=0, return_params=True)
        level = 12.5 if name.endswith("12.5") else 25
        assert p["sigma"] == pytest.approx(level / 255)
        assert p["case"] == name.lower()
    assert np.array_equal(add_noise(x, "iid30", rng=0), gaussian_iid(x, 30 / 255, rng=0))


def test_case_parameter_override() -> None:
    x = _levels_cube()
    assert np.array_equal(add_noise(x, "poisson", rng=0, peak=5), poisson(x, 5, rng=0))
    _, p = add_noise(x, "noniid", rng=0, sigmas=(0.1,), return_params=True)
    assert p["sigma_per_band"] == [0.1] * len(LEVELS)


def test_unknown_case_lists_known_cases() -> None:
    with pytest.raises(InputError, match="unknown noise case 'salt'.*mixture.*noniid"):
        add_noise(np.zeros((3, 8, 8)), "salt")
    with pytest.raises(ValueError):  # InputError is a ValueError
        add_noise(np.zeros((3, 8, 8)), "iid")


def test_unknown_parameter_names_accepted_ones() -> None:
    with pytest.raises(InputError, match="takes no parameter sigma.*it takes: none"):
        add_noise(np.zeros((3, 8, 8)), "iid30", sigma=0.1)
    with pytest.raises(InputError, match="takes no parameter peak.*variance"):
        add_noise(np.zeros((3, 8, 8)), "speckle", peak=3)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((8, 8)), r"\(bands, H, W\).*\(8, 8\)"),
        (np.zeros((3, 8, 8), dtype=np.uint16), "float cube"),
        (np.full((3, 8, 8), np.nan), "NaN"),
        (np.zeros((0, 8, 8)), "empty"),
    ],
)
def test_bad_cubes_raise(x: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        gaussian_noniid(x, rng=0)


def test_bad_settings_raise() -> None:
    x = np.zeros((3, 8, 8))
    with pytest.raises(InputError, match="sigma"):
        gaussian_iid(x, -0.1, rng=0)
    with pytest.raises(InputError, match="rng"):
        gaussian_iid(x, 0.1, rng="seed")
    with pytest.raises(InputError, match="amounts"):
        impulse(x, amounts=(1.5,), rng=0)
    with pytest.raises(InputError, match="fraction"):
        stripe(x, fraction=(0.2, 0.1), rng=0)
    with pytest.raises(InputError, match="sigmas"):
        gaussian_noniid(x, sigmas=(), rng=0)


def test_out_of_range_input_warns() -> None:
    with pytest.warns(UserWarning, match="expect a cube in"):
        gaussian_iid(np.full((1, 4, 4), 255.0), 0.1, rng=0)


def test_small_excursions_do_not_warn() -> None:
    x = np.linspace(-0.05, 1.05, 64).reshape(1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gaussian_iid(x, 0.1, rng=0)


def test_noniid_sigma_set_default() -> None:
    assert np.allclose(np.array(NONIID_SIGMAS) * 255, (10, 30, 50, 70))
