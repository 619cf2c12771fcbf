"""Classical baselines: each improves a noisy cube, and the interface behaves."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ras2s import baselines
from ras2s.baselines import MissingDependencyError, estimate_sigma
from ras2s.errors import InputError, Ras2sError
from ras2s.metrics import mpsnr
from ras2s.noise import add_noise

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLOTH = DATA / "CAVE_cloth" / "cloth_ms_256.mat"
SIGMA = 30 / 255
MARGIN_DB = 3.0
# BM3D/BM4D take ~1-2 s per 32 x 32 band on a shared CPU: a band subset keeps the
# suite fast; the full 31-band crop runs under -m slow.
FEW_BANDS = {"bm3d": slice(0, 31, 10), "bm4d": slice(0, 31, 5)}
MODULES = {
    "bm4d": "bm4d",
    "bm3d": "bm3d",
    "tv": "skimage.restoration",
    "wavelet": "skimage.restoration",
    "hyres": "pywt",
}


def smooth_cube(bands: int = 31, size: int = 32) -> np.ndarray:
    """A low-rank cube of smooth images times smooth spectra, values in [0.1, 0.9]."""
    y, x = np.mgrid[0:size, 0:size] / size
    images = [
        np.sin(2 * np.pi * x) * np.cos(np.pi * y),
        np.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) / 0.05),
        (x > 0.5).astype(float) * 0.5 + 0.25 * y,
    ]
    lam = np.linspace(0, 1, bands)
    spectra = [0.5 + 0.5 * np.sin(3 * lam), np.exp(-((lam - 0.3) ** 2) / 0.1), lam]
    cube = sum(s[:, None, None] * im[None] for s, im in zip(spectra, images, strict=True))
    cube = (cube - cube.min()) / (cube.max() - cube.min())
    return (0.1 + 0.8 * cube).astype(np.float32)


@pytest.fixture(scope="module")
def cloth_crop() -> np.ndarray:
    if not CLOTH.exists():
        pytest.skip(f"{CLOTH} is absent (the shared data is not checked out here)")
    from ras2s.io import read_cube

    raw = read_cube(CLOTH, key="NRD").data.astype(np.float32)
    cube = (raw - raw.min()) / (raw.max() - raw.min())
    h, w = cube.shape[1:]
    return np.ascontiguousarray(cube[:, h // 2 - 16 : h // 2 + 16, w // 2 - 16 : w // 2 + 16])


def _check_improves(name: str, clean: np.ndarray, *, sigma=None) -> None:
    noisy = add_noise(clean, "iid30", rng=0)
    before = noisy.copy()
    out = baselines.run(name, noisy, sigma=sigma)
    assert out.shape == noisy.shape and out.dtype == np.float32
    np.testing.assert_array_equal(noisy, before)  # input untouched
    gain = mpsnr(out, clean) - mpsnr(noisy, clean)
    assert gain > MARGIN_DB, f"{name}: only {gain:.2f} dB over the noisy input"


@pytest.mark.parametrize("name", sorted(baselines.METHODS))
def test_improves_synthetic(name):
    clean = smooth_cube()[FEW_BANDS.get(name, slice(None))]
    _check_improves(name, clean)


@pytest.mark.parametrize("name", sorted(baselines.METHODS))
def test_improves_real_crop(name, cloth_crop):
    clean = np.ascontiguousarray(cloth_crop[FEW_BANDS.get(name, slice(None))])
    _check_improves(name, clean, sigma=SIGMA)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bm3d", "bm4d"])
def test_improves_real_crop_all_bands(name, cloth_crop):
    _check_improves(name, cloth_crop)


def test_interface_shape():
    assert set(baselines.METHODS) == {"bm4d", "bm3d", "tv", "wavelet", "hyres"}
    assert baselines.available() == dict.fromkeys(baselines.METHODS)  # all installed here
    for name in baselines.METHODS:
        info = baselines.describe(name)
        json.dumps(info)
        assert info["name"] == name and info["reference"] and "params" in info
    assert baselines.describe("tv", weight_per_sigma=0.5)["params"]["weight_per_sigma"] == 0.5


def test_unknown_name_lists_available():
    with pytest.raises(InputError, match=r"unknown baseline 'nlm'.*bm3d, bm4d, hyres, tv"):
        baselines.run("nlm", smooth_cube(4, 16))


def test_unknown_parameter():
    with pytest.raises(InputError, match="no parameter"):
        baselines.run("tv", smooth_cube(4, 16), strength=3)


@pytest.mark.parametrize("name", sorted(baselines.METHODS))
def test_missing_dependency(name, monkeypatch):
    monkeypatch.setitem(sys.modules, MODULES[name], None)  # import now fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'ras2s\[baselines\]'") as err:
        baselines.run(name, smooth_cube(6, 16), sigma=0.1)
    assert isinstance(err.value, Ras2sError)
    assert MODULES[name].split(".")[0] in str(err.value)
    reason = baselines.available()[name]
    assert reason is not None and "ras2s[baselines]" in reason


def test_bad_inputs():
    with pytest.raises(InputError, match="shape"):
        baselines.run("tv", np.zeros((16, 16), dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        cube = smooth_cube(4, 16)
        cube[0, 0, 0] = np.nan
        baselines.run("tv", cube)
    with pytest.raises(InputError, match="one per band"):
        baselines.run("wavelet", smooth_cube(4, 16), sigma=[0.1, 0.2])
    with pytest.raises(InputError, match="profile"):
        baselines.run("bm4d", smooth_cube(6, 16), profile="fast")


def test_sigma_estimate_within_20_percent():
    clean = smooth_cube(8, 64)
    sigmas = np.array([10, 20, 30, 40, 50, 60, 70, 80]) / 255
    noisy = clean + sigmas[:, None, None] * np.random.default_rng(0).standard_normal(clean.shape)
    est = estimate_sigma(noisy)
    assert est.shape == (8,)
    np.testing.assert_allclose(est, sigmas, rtol=0.2)


def test_sigma_estimate_matches_scikit_image():
    restoration = pytest.importorskip("skimage.restoration")
    noisy = 0.5 + 0.1 * np.random.default_rng(1).standard_normal((3, 96, 96))
    ours = estimate_sigma(noisy)
    theirs = [restoration.estimate_sigma(b) for b in noisy]
    np.testing.assert_allclose(ours, theirs, rtol=0.1)


def test_per_band_sigma_used():
    """A per-band sigma denoises a non-i.i.d. cube better than ignoring the spread."""
    clean = smooth_cube(31, 32)
    noisy, params = add_noise(clean, "noniid", rng=0, return_params=True)
    out = baselines.run("hyres", noisy, sigma=params["sigma_per_band"])
    assert mpsnr(out, clean) - mpsnr(noisy, clean) > MARGIN_DB
