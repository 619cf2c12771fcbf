"""``ras2s report`` through click's CliRunner."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from click.testing import CliRunner  # noqa: E402

from ras2s.cli.report import report as report_command  # noqa: E402


def test_report_command(report_cubes, tmp_path):
    clean, noisy, results = report_cubes
    for name, cube in (("clean", clean), ("noisy", noisy), ("good", results["good"])):
        np.save(tmp_path / f"{name}.npy", cube * 1000)  # any unit: mapped by clean's range
    out = tmp_path / "out"
    args = [
        "--clean",
        str(tmp_path / "clean.npy"),
        "--noisy",
        str(tmp_path / "noisy.npy"),
        "--denoised",
        f"good={tmp_path / 'good.npy'}",
        "-o",
        str(out),
        "--layout",
        "BHW",
        "--rgb",
        "20,10,2",
        "--pixels",
        "3,4;10,12",
        "--inset",
        "5,5,12",
    ]
    result = CliRunner().invoke(report_command, args)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert page.count("<img") == 4 and "[20, 10, 2]" in page
    rows = re.findall(r"<tr><td>(noisy|good)</td><td[^>]*>([\d.]+)", page)
    assert [r[0] for r in rows] == ["noisy", "good"] and float(rows[1][1]) > 35
    again = CliRunner().invoke(report_command, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert CliRunner().invoke(report_command, [*args, "--force"]).exit_code == 0
    bad = CliRunner().invoke(report_command, [*args, "--force", "--rgb", "1,2"])
    assert bad.exit_code == 2 and "--rgb" in bad.output
    lone = CliRunner().invoke(
        report_command, ["--noisy", str(tmp_path / "noisy.npy"), "-o", str(tmp_path / "o2")]
    )
    assert lone.exit_code == 2 and "--clean" in lone.output
