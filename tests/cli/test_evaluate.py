"""``ras2s evaluate`` through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ras2s.cli.evaluate import evaluate as evaluate_command
from ras2s.io import write_cube

from ..conftest import csv_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def test_failures_exit_2_and_the_others_are_written(tmp_path, cubes, tiny_weights, runner):
    (cubes / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    (cubes / "flat.npy").write_bytes(b"")
    write_cube(cubes / "const.npy", np.ones((4, 16, 16), np.float32))
    result = runner.invoke(
        evaluate_command,
        [
            "--data",
            str(cubes),
            "--cases",
            "noniid",
            "--weights",
            str(tiny_weights),
            "-o",
            str(tmp_path / "cli"),
            "-q",
        ],
    )
    assert result.exit_code == 2
    assert "3 failure(s)" in result.output and "broken" in result.output
    assert len(csv_rows(tmp_path / "cli" / "per_image.csv")) == 4


def test_evaluate_cli(runner, tmp_path, cubes, tiny_weights):
    out = tmp_path / "cli"
    args = [
        "--data",
        str(cubes),
        "--cases",
        "noniid,iid30",
        "--methods",
        "ras2s",
        "--weights",
        str(tiny_weights),
        "--crop",
        "16",
        "-o",
        str(out),
        "--seed",
        "5",
    ]
    result = runner.invoke(evaluate_command, args)
    assert result.exit_code == 0, result.output
    assert "| Noisy |" in result.output  # the table on stdout
    assert len(csv_rows(out / "per_image.csv")) == 8
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["seed"] == 5 and settings["crop"] == [16, 16]
    no_data = runner.invoke(evaluate_command, ["--cases", "noniid"])
    assert no_data.exit_code == 2 and "--data" in no_data.output
    bad = runner.invoke(evaluate_command, [*args, "--methods", "nope", "--no-resume"])
    assert bad.exit_code == 2 and "unknown method(s) nope" in bad.output


# --- issue 13 --------------------------------------------------------------------------


def _one_line_error(result, expect):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "internal error" not in lines[0], lines


def test_evaluate_output_that_is_a_file(runner, tmp_path, cubes):
    (tmp_path / "taken").write_text("mine")
    args = [str(cubes), "-o", str(tmp_path / "taken"), "--cases", "iid30", "--methods", "tv"]
    _one_line_error(runner.invoke(evaluate_command, [*args, "-q"]), "taken")
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("bad", ["missing.npy", "empty", "corrupt.npy"])
def test_evaluate_without_usable_input_writes_no_results_folder(runner, tmp_path, bad):
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt.npy").write_bytes(b"not numpy")
    out = tmp_path / "results"
    args = ["--data", str(tmp_path / bad), "-o", str(out), "--cases", "iid30", "--methods", "tv"]
    _one_line_error(runner.invoke(evaluate_command, [*args, "-q"]), bad)
    assert not out.exists()
