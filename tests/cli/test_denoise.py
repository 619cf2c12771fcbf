"""The ras2s command through click's CliRunner: denoise, info, weights, and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io

from ras2s.cli import main
from ras2s.io import read_cube, write_cube


@pytest.fixture
def cube(rng):
    return (rng.random((6, 32, 40)) * 1000).astype(np.float32)


def _invoke(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("ext", [".npy", ".mat", ".tif", ".h5", ".npz", ".hdr"])
def test_denoise_each_format(runner, tmp_path, cube, tiny_weights, ext):
    source = tmp_path / f"scene{ext}"
    write_cube(source, cube)
    layout = [] if ext in (".mat", ".tif", ".hdr") else ["--layout", "BHW"]
    result = _invoke(runner, "denoise", source, "--weights", tiny_weights, "-q", *layout)
    assert result.exit_code == 0, result.output
    stem = "scene_denoised"
    out = read_cube(tmp_path / f"{stem}{ext}", layout=layout[1] if layout else None)
    assert out.data.shape == cube.shape and out.data.dtype == cube.dtype
    assert not np.array_equal(out.data, cube)


def test_denoise_png_folder(runner, tmp_path, rng, tiny_weights):
    folder = tmp_path / "balloons_ms"
    write_cube(folder, rng.integers(0, 65535, (5, 24, 24), dtype=np.uint16))
    result = _invoke(runner, "denoise", folder, "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    out = read_cube(tmp_path / "balloons_ms_denoised")
    assert out.data.shape == (5, 24, 24) and out.data.dtype == np.uint16


def test_denoise_explicit_output_and_format_conversion(runner, tmp_path, cube, tiny_weights):
    source = tmp_path / "a.mat"
    write_cube(source, cube)
    result = _invoke(runner, "denoise", source, "-o", tmp_path / "b.tif", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert read_cube(tmp_path / "b.tif").data.shape == cube.shape


def test_batch_folder_writes_each_file(runner, tmp_path, cube, tiny_weights):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir(), dst.mkdir()
    for name in ("x.mat", "y.mat"):
        write_cube(src / name, cube)
    result = _invoke(runner, "denoise", src, "-o", dst, "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert _files(dst) == ["x_denoised.mat", "y_denoised.mat"]


def test_batch_continues_after_a_bad_file(runner, tmp_path, cube, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    write_cube(src / "good.mat", cube)
    (src / "bad.mat").write_bytes(b"garbage")
    result = runner.invoke(main, ["denoise", str(src), "--weights", str(tiny_weights), "-q"])
    assert result.exit_code == 2
    assert "bad.mat" in result.output and "1 of 2 inputs failed" in result.output
    assert (src / "good_denoised.mat").exists() and not (src / "bad_denoised.mat").exists()


def test_info(runner, tmp_path, cube):
    source = tmp_path / "scene.mat"
    write_cube(source, cube)
    result = _invoke(runner, "info", source)
    assert result.exit_code == 0
    assert "bands: 6" in result.output and "height: 32" in result.output
    assert "default_tiles: 1 x (32 x 40)" in result.output  # fits the budget: one tile


def test_weights_list(runner):
    result = _invoke(runner, "weights", "list")
    assert result.exit_code == 0 and "official" in result.output and "default" in result.output


# --- bad input: one line, exit code 2, nothing written or overwritten -------------------


def _bad(runner, tmp_path, args, expect):
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = runner.invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message
    assert expect in message, message
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before, "files were created or modified"
    assert not [p for p in tmp_path.rglob(".ras2s-*")]


def test_missing_file(runner, tmp_path, tiny_weights):
    _bad(
        runner, tmp_path, ["denoise", tmp_path / "nope.mat", "--weights", tiny_weights], "nope.mat"
    )


def test_unknown_extension(runner, tmp_path, tiny_weights):
    (tmp_path / "cube.xyz").write_bytes(b"1234")
    _bad(
        runner, tmp_path, ["denoise", tmp_path / "cube.xyz", "--weights", tiny_weights], "cube.xyz"
    )


def test_corrupt_and_truncated_files(runner, tmp_path, cube, tiny_weights):
    (tmp_path / "junk.mat").write_bytes(os.urandom(300))
    _bad(
        runner, tmp_path, ["denoise", tmp_path / "junk.mat", "--weights", tiny_weights], "junk.mat"
    )
    np.save(tmp_path / "cut.npy", cube)
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    _bad(runner, tmp_path, ["denoise", tmp_path / "cut.npy", "--weights", tiny_weights], "cut.npy")


@pytest.mark.parametrize("shape", [(32, 40), (1, 6, 32, 40)])
def test_2d_and_4d_arrays(runner, tmp_path, tiny_weights, shape):
    scipy.io.savemat(tmp_path / "x.mat", {"data": np.ones(shape, np.float32)})
    _bad(runner, tmp_path, ["denoise", tmp_path / "x.mat", "--weights", tiny_weights], "x.mat")


def test_nan_values(runner, tmp_path, cube, tiny_weights):
    cube[0, 0, 0] = np.nan
    write_cube(tmp_path / "n.mat", cube)
    _bad(runner, tmp_path, ["denoise", tmp_path / "n.mat", "--weights", tiny_weights], "NaN")
    result = runner.invoke(
        main,
        [
            "denoise",
            str(tmp_path / "n.mat"),
            "--weights",
            str(tiny_weights),
            "--nan-policy",
            "fill",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "replaced" in result.output


def test_output_exists_needs_force(runner, tmp_path, cube, tiny_weights):
    write_cube(tmp_path / "s.mat", cube)
    (tmp_path / "s_denoised.mat").write_bytes(b"keep me")
    args = ["denoise", tmp_path / "s.mat", "--weights", tiny_weights]
    _bad(runner, tmp_path, args, "already exists")
    assert (tmp_path / "s_denoised.mat").read_bytes() == b"keep me"
    assert _invoke(runner, *args, "--force", "-q").exit_code == 0
    assert read_cube(tmp_path / "s_denoised.mat").data.shape == cube.shape


def test_output_folder_missing_or_not_writable(runner, tmp_path, cube, tiny_weights, monkeypatch):
    write_cube(tmp_path / "s.mat", cube)
    args = ["denoise", tmp_path / "s.mat", "--weights", tiny_weights, "-o"]
    _bad(runner, tmp_path, [*args, tmp_path / "nowhere" / "o.mat"], "does not exist")
    (tmp_path / "ro").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p).endswith("ro") else real_access(p, mode)
    )
    _bad(runner, tmp_path, [*args, tmp_path / "ro" / "o.mat"], "not writable")


def test_key_not_in_file(runner, tmp_path, cube, tiny_weights):
    write_cube(tmp_path / "k.mat", cube, key="cube")
    _bad(
        runner,
        tmp_path,
        ["denoise", tmp_path / "k.mat", "--key", "rad", "--weights", tiny_weights],
        "rad",
    )


def test_several_candidates_listed(runner, tmp_path, cube, tiny_weights):
    scipy.io.savemat(tmp_path / "two.mat", {"a": cube, "b": cube})
    _bad(runner, tmp_path, ["denoise", tmp_path / "two.mat", "--weights", tiny_weights], "--key")


def test_ambiguous_layout(runner, tmp_path, rng, tiny_weights):
    np.save(tmp_path / "amb.npy", rng.random((6, 32, 40)).astype(np.float32))
    _bad(runner, tmp_path, ["denoise", tmp_path / "amb.npy", "--weights", tiny_weights], "--layout")


def test_unknown_weights(runner, tmp_path, cube):
    write_cube(tmp_path / "s.mat", cube)
    _bad(
        runner, tmp_path, ["denoise", tmp_path / "s.mat", "--weights", "nonexistent"], "nonexistent"
    )


def test_interrupted_write_leaves_nothing(runner, tmp_path, cube, tiny_weights, monkeypatch):
    import ras2s.io as io_module

    write_cube(tmp_path / "s.mat", cube)

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io_module.scipy.io, "savemat", explode)
    result = runner.invoke(
        main, ["denoise", str(tmp_path / "s.mat"), "--weights", str(tiny_weights)]
    )
    assert result.exit_code == 130
    assert _files(tmp_path) == ["s.mat"]


def test_denoise_with_a_classical_method(runner, tmp_path, cube):
    write_cube(tmp_path / "s.mat", cube)
    result = _invoke(runner, "denoise", tmp_path / "s.mat", "--method", "tv", "--sigma", "30", "-q")
    assert result.exit_code == 0, result.output
    out = read_cube(tmp_path / "s_denoised.mat").data
    assert out.shape == cube.shape and np.abs(out - cube).mean() > 0


def test_unknown_method(runner, tmp_path, cube):
    write_cube(tmp_path / "s.mat", cube)
    _bad(runner, tmp_path, ["denoise", tmp_path / "s.mat", "--method", "magic"], "magic")


def test_preview_png(runner, tmp_path, cube, tiny_weights):
    from PIL import Image

    write_cube(tmp_path / "s.mat", cube)
    args = ["denoise", tmp_path / "s.mat", "--weights", tiny_weights, "-q"]
    result = _invoke(runner, *args, "--preview", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(tmp_path / "p.png"))
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # two panels side by side
    assert image.std() > 0
    _bad(runner, tmp_path, [*args, "--force", "--preview", tmp_path / "p.txt"], ".png")
