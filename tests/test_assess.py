import csv
import json

import numpy as np
import pytest

from ras2s import assess
from ras2s.errors import InputError
from ras2s.report.assessment import bands_by_wavelength, write_assessment


def smooth_cube(bands=8, h=128, w=128, scale=1000.0):
    """A smooth scene in data units: spectral ramps times low-frequency spatial patterns."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    cube = np.empty((bands, h, w))
    for b in range(bands):
        t = b / max(bands - 1, 1)
        cube[b] = scale * (
            0.4 + 0.3 * np.sin(2 * np.pi * (x + t)) * np.cos(np.pi * y) + 0.2 * t * y
        )
    cube[:, h // 3 : h // 2, w // 4 : w // 2] += 0.1 * scale  # a few edges
    return cube


@pytest.mark.parametrize("sigma", [1.0, 5.0, 20.0, 60.0])
def test_sigma_estimate_within_10_percent(rng, sigma):
    clean = smooth_cube()
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    est = assess.estimate_sigma(noisy)
    assert est.shape == (clean.shape[0],) and est.dtype == np.float64
    err = np.abs(est / sigma - 1)
    assert err.max() < 0.10, err


def test_sigma_per_band_and_integer_input(rng):
    clean = smooth_cube(bands=4)
    sigmas = np.array([1.0, 2.0, 8.0, 30.0])
    noisy = clean + sigmas[:, None, None] * rng.standard_normal(clean.shape)
    est = assess.estimate_sigma(np.round(noisy).astype(np.int32))
    np.testing.assert_allclose(est, sigmas, rtol=0.10)


def test_sigma_ignores_nodata(rng):
    noisy = smooth_cube(bands=3) + 10 * rng.standard_normal((3, 128, 128))
    noisy[:, :20] = -9999
    est = assess.estimate_sigma(noisy, nodata=-9999)
    np.testing.assert_allclose(est, 10, rtol=0.10)
    # without the nodata value the constant frame pulls the estimate down
    assert assess.estimate_sigma(noisy).max() < 9


def test_stripe_index_rises_with_stripes(rng):
    clean = smooth_cube(bands=4)
    noisy = clean + 5 * rng.standard_normal(clean.shape)
    base = assess.stripe_index(noisy)
    striped = noisy.copy()
    cols = rng.choice(128, 15, replace=False)
    striped[:, :, cols] += rng.uniform(-50, 50, size=15)
    more = assess.stripe_index(striped)
    assert base.shape == (4,) and base.dtype == np.float64
    assert np.all(more > 3 * base)
    stronger = noisy.copy()
    stronger[:, :, cols] += 2 * rng.uniform(-50, 50, size=15)
    assert np.all(assess.stripe_index(stronger) > base)
    # iid noise alone: about sigma / sqrt(H)
    assert np.all(base < 2 * 5 / np.sqrt(128))


def test_residual_correlation():
    rng = np.random.default_rng(0)
    clean = smooth_cube(bands=3)
    noisy = clean + 10 * rng.standard_normal(clean.shape)
    perfect = assess.residual_correlation(noisy, clean)
    assert np.all(np.abs(perfect) < 0.05)
    dimmed = assess.residual_correlation(noisy, 0.5 * clean)  # structure removed
    assert np.all(dimmed > 0.5)
    same = assess.residual_correlation(noisy, noisy)  # zero residual: undefined
    assert np.all(np.isnan(same))


def test_band_table_and_summary(rng):
    clean = smooth_cube(bands=5, h=64, w=64)
    noisy = clean + 10 * rng.standard_normal(clean.shape)
    rows = assess.band_table(noisy, {"oracle": clean}, wavelengths=[450, 500, 550, 600, 650])
    assert len(rows) == 10
    assert list(rows[0]) == list(assess.COLUMNS)
    assert [r["cube"] for r in rows] == ["noisy"] * 5 + ["oracle"] * 5
    assert rows[7]["band"] == 2 and rows[7]["wavelength"] == 550.0
    summary = assess.summarise(noisy, {"oracle": clean}, rows=rows)
    assert summary["cubes"]["noisy"]["median_sigma"] == pytest.approx(10, rel=0.1)
    assert summary["cubes"]["oracle"]["sigma_ratio"] < 0.2
    assert abs(summary["cubes"]["oracle"]["residual_correlation"]) < 0.05
    assert summary["cubes"]["oracle"]["residual_rms"] == pytest.approx(10, rel=0.05)
    json.dumps(summary)  # JSON-ready


def test_errors():
    with pytest.raises(InputError, match="shape"):
        assess.estimate_sigma(np.zeros((4, 4)))
    with pytest.raises(InputError, match="differs"):
        assess.band_table(np.zeros((2, 8, 8)), {"x": np.zeros((2, 8, 9))})
    with pytest.raises(InputError, match="wavelengths"):
        assess.band_table(np.zeros((2, 8, 8)), wavelengths=[1.0])
    with pytest.raises(InputError, match="odd"):
        assess.stripe_index(np.zeros((2, 8, 8)), window=4)


def test_inputs_not_modified(rng):
    noisy = smooth_cube(bands=2, h=32, w=32) + rng.standard_normal((2, 32, 32))
    noisy[:, 0] = -1
    keep = noisy.copy()
    assess.band_table(noisy, {"a": noisy * 0.9}, nodata=-1)
    np.testing.assert_array_equal(noisy, keep)


def test_bands_by_wavelength():
    assert bands_by_wavelength(None, 31) == (27, 16, 6)
    wl = np.linspace(400, 2500, 200)
    r, g, b = bands_by_wavelength(list(wl), 200)
    assert abs(wl[r] - 650) < 11 and abs(wl[g] - 550) < 11 and abs(wl[b] - 460) < 11
    assert bands_by_wavelength([1500.0, 2000.0, 2400.0], 3) == (2, 1, 0)  # no visible: default


def test_write_assessment(tmp_path, rng):
    pytest.importorskip("matplotlib")
    clean = smooth_cube(bands=6, h=48, w=40)
    noisy = clean + 10 * rng.standard_normal(clean.shape)
    noisy[:, :4] = -9999
    written = write_assessment(
        tmp_path / "out",
        noisy,
        {"oracle": np.where(noisy == -9999, -9999, clean)},
        wavelengths=[450, 500, 550, 600, 650, 700],
        nodata=-9999,
    )
    with open(written["per_band"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(assess.COLUMNS) and len(table) == 12
    summary = json.loads(written["summary"].read_text())
    assert summary["nodata"] == -9999 and summary["missing_values"] == 6 * 4 * 40
    page = written["report"].read_text()
    for name in (
        "sigma_per_band",
        "false_colour",
        "noisiest_bands",
        "residual_maps",
        "column_profiles",
        "spectra",
    ):
        assert (tmp_path / "out" / f"{name}.png").is_file()
        assert f'alt="{name}.png"' in page
    assert page.count("data:image/png;base64,") == 6
