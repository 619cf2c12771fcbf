"""Scores in the right domain (issue 25, class 5): noise -> denoise -> report, as the README.

``ras2s noise`` writes in the clean cube's normalised [0, 1] domain; ``report`` used
to map that file with the clean cube's own range again, and scored a uint16 cube's
noisy copy at 5.43 dB and its denoised copy at 11.03 dB, silently.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from ras2s.cli import main
from ras2s.cube import normalise
from ras2s.domain import ranges_disagree, scoring_range
from ras2s.errors import InputError
from ras2s.metrics import mpsnr

pytest.importorskip("matplotlib")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _scores(page: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in re.findall(r"<tr><td>([\w-]+)</td><td[^>]*>([\d.]+)", page)
    }


@pytest.fixture
def clean(tmp_path):
    """A smooth 12-bit cube (uint16, 0..4095), as a sensor writes it."""
    y, x = np.mgrid[0:40, 0:40] / 40
    lam = np.linspace(0, 1, 12)[:, None, None]
    cube = 0.5 + 0.3 * np.sin(3 * x + 2 * lam) * np.cos(2 * y) + 0.15 * lam * y
    path = tmp_path / "clean.npy"
    np.save(path, np.round(cube / cube.max() * 4095).astype(np.uint16))
    return path


def test_noise_denoise_report_scores_in_the_noise_domain(tmp_path, clean, tiny_weights):
    noisy, den, out = tmp_path / "noisy.npy", tmp_path / "den.npy", tmp_path / "rep"
    assert _run("noise", clean, "-o", noisy, "--case", "mixture", "--layout", "BHW").exit_code == 0
    result = _run("denoise", noisy, "-o", den, "--weights", tiny_weights, "--layout", "BHW", "-q")
    assert result.exit_code == 0, result.output
    args = ["--clean", clean, "--noisy", noisy, "--denoised", f"ras2s={den}", "-o", out]
    result = _run("report", *args, "--layout", "BHW")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output.lower()
    scores = _scores((out / "report.html").read_text())
    reference = normalise(np.load(clean))[0]
    assert scores["noisy"] == pytest.approx(mpsnr(reference, np.load(noisy)), abs=0.01)
    assert scores["ras2s"] == pytest.approx(mpsnr(reference, np.load(den)), abs=0.01)
    assert scores["noisy"] > 12  # the silent bug gave 5.43 dB on the README's cube


def test_keep_range_noise_scores_the_same(tmp_path, clean):
    plain, kept = tmp_path / "n01.npy", tmp_path / "nkeep.npy"
    for path, extra in ((plain, []), (kept, ["--keep-range"])):
        result = _run("noise", clean, "-o", path, "--case", "iid30", "--layout", "BHW", *extra)
        assert result.exit_code == 0, result.output
    pages = []
    for path in (plain, kept):
        out = tmp_path / f"rep_{path.stem}"
        result = _run("report", "--clean", clean, "--noisy", path, "-o", out, "--layout", "BHW")
        assert result.exit_code == 0, result.output
        pages.append(_scores((out / "report.html").read_text())["noisy"])
    assert pages[0] == pytest.approx(pages[1], abs=0.01)


def test_a_normalised_cube_without_its_sidecar_is_refused_naming_keep_range(tmp_path, clean):
    noisy = tmp_path / "noisy.npy"
    assert _run("noise", clean, "-o", noisy, "--layout", "BHW").exit_code == 0
    (tmp_path / "noisy.npy.json").unlink()  # copied elsewhere without its record
    result = _run(
        "report", "--clean", clean, "--noisy", noisy, "-o", tmp_path / "r", "--layout", "BHW"
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(noisy) in lines[0] and "--keep-range" in lines[0]
    assert not (tmp_path / "r" / "report.html").exists()


def test_a_noise_sidecar_from_another_clean_cube_is_refused(tmp_path, clean, rng):
    other = tmp_path / "other.npy"
    np.save(other, (rng.random((12, 40, 40)) * 100).astype(np.float32))
    noisy = tmp_path / "noisy.npy"
    assert _run("noise", other, "-o", noisy, "--layout", "BHW").exit_code == 0
    result = _run(
        "report", "--clean", clean, "--noisy", noisy, "-o", tmp_path / "r", "--layout", "BHW"
    )
    assert result.exit_code == 2
    assert "was made by ras2s noise from a cube of range" in result.output


def test_scoring_range_rules(tmp_path):
    data = np.linspace(-0.1, 1.1, 24).reshape(2, 3, 4)
    assert scoring_range(tmp_path / "x.npy", data * 4095, 0.0, 4095.0) == (0.0, 4095.0)
    with pytest.raises(InputError, match="--keep-range"):
        scoring_range(tmp_path / "x.npy", data, 0.0, 4095.0)
    record = {
        "case": "iid30",
        "domain": "normalised [0, 1]",
        "normalisation": {"lo": 0, "hi": 4095},
    }
    (tmp_path / "x.npy.json").write_text(json.dumps(record))
    assert scoring_range(tmp_path / "x.npy", data, 0.0, 4095.0) == (0.0, 1.0)
    # a denoised file's record names its input: the noise record is found through it
    den = {"input": {"path": str(tmp_path / "x.npy")}, "method": "ras2s"}
    (tmp_path / "d.npy.json").write_text(json.dumps(den))
    assert scoring_range(tmp_path / "d.npy", data, 0.0, 4095.0) == (0.0, 1.0)
    assert ranges_disagree(0, 1, 0, 4095) and ranges_disagree(0, 50000, 0, 4095)
    assert not ranges_disagree(-400, 4500, 0, 4095)
