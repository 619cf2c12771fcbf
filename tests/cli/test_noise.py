"""``ras2s noise`` through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ras2s.cli.noise import noise as noise_command
from ras2s.cli.noise import parse_param
from ras2s.io import read_cube, write_cube
from ras2s.noise import add_noise


def test_noise_cli_writes_cube_and_sidecar(runner, tmp_path, rng):
    clean = (rng.random((5, 16, 18)) * 1000 + 200).astype(np.float32)
    write_cube(tmp_path / "clean.npy", clean, layout="BHW")
    out = tmp_path / "noisy.npy"
    args = ["--case", "mixture", "--seed", "3", "--layout", "BHW", "-o", str(out)]
    result = runner.invoke(noise_command, [str(tmp_path / "clean.npy"), *args])
    assert result.exit_code == 0, result.output
    noisy = read_cube(out, layout="BHW").data
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert -1.5 < noisy.min() < 0.5 and 0.5 < noisy.max() < 2.5  # the [0, 1] domain
    meta = json.loads((tmp_path / "noisy.npy.json").read_text())
    assert meta["case"] == "mixture" and meta["seed"] == 3
    drawn = meta["parameters"]
    assert len(drawn["sigma_per_band"]) == 5
    assert {"stripe", "deadline", "impulse"} <= set(drawn)
    assert meta["normalisation"]["lo"] == pytest.approx(float(clean.min()))
    assert meta["normalisation"]["hi"] == pytest.approx(float(clean.max()))
    assert len(meta["input"]["sha256"]) == 64 and meta["ras2s_version"]
    # the sidecar's parameters reproduce the file through the API
    lo, hi = meta["normalisation"]["lo"], meta["normalisation"]["hi"]
    clean01 = ((clean.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
    assert np.array_equal(add_noise(clean01, meta["case"], rng=meta["seed"]), noisy)


def test_noise_cli_same_seed_same_file(runner, tmp_path, rng):
    write_cube(tmp_path / "c.npy", rng.random((4, 12, 12)).astype(np.float32), layout="BHW")
    outs = []
    for name, seed in (("a.npy", 7), ("b.npy", 7), ("c7.npy", 8)):
        args = [str(tmp_path / "c.npy"), "-o", str(tmp_path / name), "--seed", str(seed)]
        result = runner.invoke(noise_command, [*args, "--case", "stripe", "--layout", "BHW"])
        assert result.exit_code == 0, result.output
        outs.append(tmp_path / name)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_bytes() != outs[2].read_bytes()
    side_a = json.loads((tmp_path / "a.npy.json").read_text())
    side_b = json.loads((tmp_path / "b.npy.json").read_text())
    side_a.pop("output"), side_b.pop("output")
    assert side_a == side_b


def test_noise_cli_params_keep_range_and_force(runner, tmp_path, rng):
    clean = rng.integers(0, 60000, (3, 10, 10), dtype=np.uint16)
    write_cube(tmp_path / "c.mat", clean)
    out = tmp_path / "n.mat"
    base = [str(tmp_path / "c.mat"), "-o", str(out), "--case", "poisson", "--param", "peak=5"]
    result = runner.invoke(noise_command, [*base, "--keep-range"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "n.mat.json").read_text())
    assert meta["parameters"]["peak"] == 5 and meta["overrides"] == {"peak": 5}
    assert meta["domain"].startswith("input range")
    noisy = read_cube(out).data
    assert noisy.dtype == np.float32 and noisy.max() > 100  # back in the input's range
    again = runner.invoke(noise_command, base)
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(noise_command, [*base, "--force", "--param", "sigma=0.1"])
    assert bad.exit_code == 2 and "takes no parameter sigma" in bad.output


def test_noise_cli_help_names_the_0_255_scale(runner):
    result = runner.invoke(noise_command, ["--help"])
    assert "30/255" in result.output and "0-255" in result.output


def test_parse_param():
    assert parse_param("peak=5") == ("peak", 5)
    assert parse_param("sigmas=[0.1, 0.2]") == ("sigmas", [0.1, 0.2])
    with pytest.raises(Exception, match="name=value"):
        parse_param("peak")


# --- issue 13 --------------------------------------------------------------------------


def test_noise_never_overwrites_its_input(runner, tmp_path, rng, digest):
    write_cube(tmp_path / "c.npy", rng.random((6, 16, 16)).astype(np.float32), layout="BHW")
    before = digest(tmp_path)
    args = [str(tmp_path / "c.npy"), "-o", str(tmp_path / "c.npy"), "--force"]
    result = runner.invoke(noise_command, [*args, "--layout", "BHW"])
    assert result.exit_code == 2 and "would overwrite the input" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert digest(tmp_path) == before


def test_noise_negative_seed_is_one_line(runner, tmp_path, rng):
    write_cube(tmp_path / "c.npy", rng.random((6, 16, 16)).astype(np.float32), layout="BHW")
    result = runner.invoke(noise_command, [str(tmp_path / "c.npy"), "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output
    with pytest.raises(Exception, match="seed must be >= 0"):
        add_noise(np.zeros((3, 4, 4), np.float32), "iid30", rng=-1)


def test_noise_keep_range_keeps_the_levels_of_a_float64_cube(runner, tmp_path, rng):
    cube = 1000 + 0.001 * rng.standard_normal((6, 16, 16))
    write_cube(tmp_path / "c.npy", cube, layout="BHW")
    args = [str(tmp_path / "c.npy"), "-o", str(tmp_path / "n.npy"), "--keep-range"]
    result = runner.invoke(noise_command, [*args, "--case", "iid10", "--layout", "BHW"])
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "n.npy")
    assert out.dtype == np.float64 and len(np.unique(out)) == out.size  # no collapse to levels
