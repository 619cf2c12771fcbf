"""``ras2s assess`` and the nodata / bad-band options of ``ras2s denoise`` via CliRunner."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ras2s.cli import main
from ras2s.io import read_cube, write_cube

from ..test_assess import smooth_cube
from ..test_georef import envi_cube
from .test_denoise import _bad


def _invoke(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def scene(tmp_path, rng):
    clean = smooth_cube(bands=6, h=40, w=48)
    noisy = (clean + 10 * rng.standard_normal(clean.shape)).astype(np.float32)
    write_cube(tmp_path / "noisy.tif", noisy)
    write_cube(tmp_path / "oracle.tif", clean.astype(np.float32))
    return noisy, clean


def _usage(runner, tmp_path, args, expect):
    """A click usage error: exit 2, the reason named, nothing written."""
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = runner.invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert expect in result.output.strip().splitlines()[-1], result.output
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def _rows(folder):
    with open(folder / "per_band.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_assess_noisy_and_denoised(runner, tmp_path, scene):
    pytest.importorskip("matplotlib")
    res = _invoke(
        runner,
        "assess",
        tmp_path / "noisy.tif",
        "--denoised",
        f"oracle={tmp_path / 'oracle.tif'}",
        "-o",
        tmp_path / "out",
    )
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "out")
    assert list(rows[0]) == ["cube", "band", "wavelength", "sigma", "stripe_index"]
    assert [r["cube"] for r in rows] == ["noisy"] * 6 + ["oracle"] * 6
    assert all(abs(float(r["sigma"]) / 10 - 1) < 0.2 for r in rows[:6])  # 40 x 48 px: few blocks
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cubes"]["oracle"]["sigma_ratio"] < 0.2
    assert summary["settings"]["denoised oracle"].endswith("oracle.tif")
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


def test_assess_envi_wavelengths_and_nodata(runner, tmp_path, rng):
    data = (smooth_cube(bands=5, h=32, w=32) + 5 * rng.standard_normal((5, 32, 32))).astype(
        np.float32
    )
    data[:, :4] = -9999  # the header's data ignore value
    envi_cube(tmp_path / "scene.hdr", data, "bsq")
    res = _invoke(runner, "assess", tmp_path / "scene.hdr", "-o", tmp_path / "a", "--no-report")
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "a")
    assert [float(r["wavelength"]) for r in rows] == [400.0, 410.0, 420.0, 430.0, 440.0]
    assert all(abs(float(r["sigma"]) / 5 - 1) < 0.2 for r in rows)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["nodata"] == -9999 and summary["missing_values"] == 5 * 4 * 32
    assert not (tmp_path / "a" / "report.html").exists()


def test_assess_refusals(runner, tmp_path, scene):
    (tmp_path / "small.npy").write_bytes(b"")
    write_cube(tmp_path / "small.tif", np.zeros((6, 8, 8), np.float32))
    _usage(
        runner,
        tmp_path,
        ["assess", tmp_path / "noisy.tif", "--denoised", "x", "-o", tmp_path / "o"],
        "NAME=PATH",
    )
    _bad(
        runner,
        tmp_path,
        [
            "assess",
            tmp_path / "noisy.tif",
            "--denoised",
            f"s={tmp_path / 'small.tif'}",
            "-o",
            tmp_path / "o",
        ],
        "differs",
    )
    _bad(
        runner, tmp_path, ["assess", tmp_path / "missing.tif", "-o", tmp_path / "o"], "missing.tif"
    )
    _usage(runner, tmp_path, ["assess", tmp_path / "noisy.tif"], "--output")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "summary.json").write_text("{}")
    _bad(runner, tmp_path, ["assess", tmp_path / "noisy.tif", "-o", tmp_path / "o"], "--force")


def test_denoise_nodata_and_skip_bands(runner, tmp_path, rng, tiny_weights):
    cube = (rng.random((8, 24, 24)) * 100).astype(np.float32)
    cube[:, :3] = -1.0
    cube[[0, 7]] = 1e6  # bad bands, wild values
    write_cube(tmp_path / "c.tif", cube)
    res = _invoke(
        runner,
        "denoise",
        tmp_path / "c.tif",
        "--weights",
        tiny_weights,
        "-q",
        "--nodata",
        "-1",
        "--skip-bands",
        "0,7",
    )
    assert res.exit_code == 0, res.output
    out = read_cube(tmp_path / "c_denoised.tif").data
    np.testing.assert_array_equal(out[[0, 7]], cube[[0, 7]])
    np.testing.assert_array_equal(out[1:7, :3], -1.0)
    assert out[1:7, 3:].min() > -50 and out[1:7, 3:].max() < 200


def test_denoise_bad_band_lists(runner, tmp_path, rng, tiny_weights):
    write_cube(tmp_path / "c.tif", rng.random((4, 16, 16)).astype(np.float32))
    _usage(
        runner,
        tmp_path,
        ["denoise", tmp_path / "c.tif", "--weights", tiny_weights, "--skip-bands", "3-1"],
        "end before start",
    )
    _usage(
        runner,
        tmp_path,
        ["denoise", tmp_path / "c.tif", "--weights", tiny_weights, "--skip-bands", "2-9"],
        "outside",
    )
    _usage(
        runner,
        tmp_path,
        ["denoise", tmp_path / "c.tif", "--weights", tiny_weights, "--nodata", "x"],
        "--nodata",
    )
