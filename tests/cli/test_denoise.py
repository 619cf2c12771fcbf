"""The ras2s command through click's CliRunner: denoise, info, weights, and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io
import torch

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
    assert _files(dst) == [
        "x_denoised.mat",
        "x_denoised.mat.json",
        "y_denoised.mat",
        "y_denoised.mat.json",
    ]


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
    long_cube = tmp_path / "long.npy"
    np.save(long_cube, np.random.default_rng(0).random((70, 16, 16), dtype=np.float32))
    result = _invoke(runner, "info", long_cube)
    # the shipped weights run whole cubes (their card's band window is null) ...
    assert "1 x (16 x 16), overlap" in result.output
    assert "all 70 bands in one network run" in result.output
    # ... and weights whose card asks for 31-band windows get 3 of them over 70 bands
    from ras2s.cli.denoise import _describe_plan
    from ras2s.weights import load_model

    model = load_model("default")
    model.card = {**model.card, "inference": {"band_window": 31}}
    assert _describe_plan((70, 16, 16), np.float32, model).endswith("3 windows of 31 bands each")
    # and what --normalise auto maps to 0 and 1 for them: the estimated clean range
    from ras2s.ranges import clean_range

    lo, hi = clean_range(np.load(long_cube))
    expected = "normalisation: clean (default weights): estimated clean range, min/max of a"
    assert expected in result.output and f" {lo:.6g} .. {hi:.6g} map to 0 .. 1" in result.output


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
    write_cube(tmp_path / "s.mat", cube)

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scipy.io, "savemat", explode)
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


# --- issue 13: hostile inputs (docs/reliability.md) --------------------------------------


def _refused(runner, folder, digest, args, expect, code=2):
    """Exit ``code``, one line naming ``expect``, and every file in ``folder`` unchanged."""
    before = digest(folder)
    result = runner.invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "internal error" not in result.output
    assert expect in lines[0], lines[0]
    assert digest(folder) == before, "a file was created, changed or removed"


def _npy(path, cube):
    write_cube(path, cube, layout="BHW")
    return path


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_two_inputs_one_output_refused_before_any_work(
    runner, tmp_path, cube, tiny_weights, digest, force
):
    for name in ("x", "y", "out"):
        (tmp_path / name).mkdir()
    a, b = _npy(tmp_path / "x/a.npy", cube), _npy(tmp_path / "y/a.npy", cube * 2)
    args = ["denoise", a, b, "-o", tmp_path / "out", "--layout", "BHW", "--weights", tiny_weights]
    _refused(runner, tmp_path, digest, [*args, *force], "would both be written")
    _refused(runner, tmp_path, digest, [*args[:2], a, *args[3:], *force], "given twice")


@pytest.mark.parametrize(
    "make_args",
    [
        lambda d: ["denoise", d / "in.npy", "-o", d / "in.npy"],
        lambda d: ["denoise", d / "in.npy", "--suffix", ""],
        lambda d: ["denoise", d / "in.npy", d / "in_denoised.npy"],  # one is the other's output
        lambda d: ["noise", d / "in.npy", "-o", d / "in.npy"],
    ],
    ids=["denoise-self", "empty-suffix", "input-is-output", "noise-self"],
)
def test_an_input_is_never_overwritten_even_with_force(
    runner, tmp_path, cube, tiny_weights, digest, make_args
):
    _npy(tmp_path / "in.npy", cube)
    _npy(tmp_path / "in_denoised.npy", cube)
    args = [*make_args(tmp_path), "--force", "--layout", "BHW"]
    if args[0] == "denoise":
        args += ["--weights", tiny_weights]
    _refused(runner, tmp_path, digest, args, "input" if "suffix" not in str(args) else "suffix")


def test_output_or_preview_inside_an_input_png_folder_refused(
    runner, tmp_path, tiny_weights, digest
):
    bands = tmp_path / "bands"
    write_cube(bands, (np.arange(5 * 16 * 16).reshape(5, 16, 16) % 60000).astype(np.uint16))
    base = ["denoise", bands, "--weights", tiny_weights, "--force"]
    _refused(runner, tmp_path, digest, [*base, "-o", bands / "x.npy"], "would overwrite the input")
    _refused(runner, tmp_path, digest, [*base, "-o", bands], "would overwrite the input")
    preview = ["-o", tmp_path / "o.tif", "--preview", bands / "band_001.png"]
    _refused(runner, tmp_path, digest, [*base, *preview], "would overwrite the input")


def test_envi_output_on_the_input_data_file_refused(runner, tmp_path, cube, tiny_weights, digest):
    write_cube(tmp_path / "scene.hdr", cube)  # scene.hdr + its data file scene.img
    args = ["denoise", tmp_path / "scene.hdr", "--weights", tiny_weights, "--force"]
    _refused(runner, tmp_path, digest, [*args, "-o", tmp_path / "scene.hdr"], "input")
    os.symlink(tmp_path / "scene.img", tmp_path / "alias.img")  # alias.hdr would write it
    _refused(runner, tmp_path, digest, [*args, "-o", tmp_path / "alias.hdr"], "overwrite the input")


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda p: p.write_text("my notes"), "no extension"),  # would become a PNG folder
        (lambda p: os.symlink(p.parent / "precious.npy", p), "symbolic link"),
        (lambda p: os.symlink(p.parent / "nothing-here.npy", p), "symbolic link"),  # dangling
        (lambda p: os.mkfifo(p), "FIFO"),
    ],
    ids=["extensionless-file", "symlink", "dangling-symlink", "fifo"],
)
def test_force_replaces_only_regular_files(
    runner, tmp_path, cube, tiny_weights, digest, make, expect
):
    _npy(tmp_path / "in.npy", cube)
    (tmp_path / "precious.npy").write_bytes(b"precious")
    name = "notes" if expect == "no extension" else "out.npy"
    make(tmp_path / name)
    args = ["denoise", tmp_path / "in.npy", "-o", tmp_path / name, "--layout", "BHW"]
    args += ["--weights", tiny_weights]
    if expect == "symbolic link":  # a link counts as existing: refused without --force too
        _refused(runner, tmp_path, digest, args, expect)
    _refused(runner, tmp_path, digest, [*args, "--force"], expect)
    assert (tmp_path / "precious.npy").read_bytes() == b"precious"


def test_force_never_replaces_a_folder_holding_other_files(runner, tmp_path, tiny_weights, digest):
    bands = tmp_path / "scan"
    write_cube(bands, (np.arange(4 * 16 * 16).reshape(4, 16, 16) % 250).astype(np.uint8))
    out = tmp_path / "scan_denoised"  # the default output of a PNG folder, already there
    out.mkdir()
    (out / "band_001.png").write_bytes(b"old band")
    (out / "thesis.tex").write_text("unrelated work")
    args = ["denoise", bands, "--weights", tiny_weights, "--force"]
    _refused(runner, tmp_path, digest, args, "not only band PNGs")
    (out / "thesis.tex").unlink()
    assert runner.invoke(main, [str(a) for a in [*args, "-q"]]).exit_code == 0
    assert read_cube(out).data.shape == (4, 16, 16)


def test_a_folder_rerun_skips_earlier_outputs(runner, tmp_path, cube, tiny_weights):
    folder = tmp_path / "scenes"
    folder.mkdir()
    _npy(folder / "a.npy", cube)
    args = ["denoise", folder, "--layout", "BHW", "--weights", tiny_weights, "-q"]
    assert runner.invoke(main, [str(a) for a in args]).exit_code == 0
    noise = ["noise", folder / "a.npy", "-o", tmp_path / "a_noisy.npy", "--layout", "BHW"]
    assert runner.invoke(main, [str(a) for a in noise]).exit_code == 0
    (folder / "notes.json").write_text("{}")  # sidecars are never cubes
    result = runner.invoke(main, [str(a) for a in [*args, "--force"]])
    assert result.exit_code == 0, result.output
    assert _files(folder) == ["a.npy", "a_denoised.npy", "a_denoised.npy.json", "notes.json"]


# class 3: hangs


@pytest.mark.parametrize(("tile", "overlap"), [(8, 8), (8, 20)])
def test_overlap_not_below_the_tile_is_an_error(
    runner, tmp_path, cube, tiny_weights, tile, overlap
):
    _npy(tmp_path / "c.npy", cube)
    args = ["denoise", tmp_path / "c.npy", "--layout", "BHW", "--weights", tiny_weights]
    args += ["--tile", tile, "--overlap", overlap]
    _bad(runner, tmp_path, args, "must be smaller than the tile")


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_fifo_or_socket_input_refused_without_opening_it(runner, tmp_path, tiny_weights, kind):
    import socket

    path = tmp_path / "pipe.npy"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block forever
        _bad(runner, tmp_path, ["denoise", path, "--weights", tiny_weights], "FIFO")
    else:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            _bad(runner, tmp_path, ["denoise", path, "--weights", tiny_weights], "socket")


# class 5: one line, naming the file; never "internal error"


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--device", "cuda:7"], "cuda"),
        (["--suffix", "/../x"], "no slash"),
        (["--max-memory", "0"], "not a positive size"),
        (["--frobnicate"], "No such option"),
        (["--layout", "XYZ"], "--layout"),
        (["--tile", "0"], "--tile"),
    ],
)
def test_user_mistakes_are_one_line(runner, tmp_path, cube, tiny_weights, digest, extra, expect):
    _npy(tmp_path / "c.npy", cube)
    args = ["denoise", tmp_path / "c.npy", "--layout", "BHW", "--weights", tiny_weights, *extra]
    _refused(runner, tmp_path, digest, args, expect)


def test_timedelta_cube_is_one_line(runner, tmp_path, tiny_weights, digest):
    np.save(tmp_path / "td.npy", np.zeros((6, 16, 16), "m8[s]"))
    args = ["denoise", tmp_path / "td.npy", "--layout", "BHW", "--weights", tiny_weights]
    _refused(runner, tmp_path, digest, args, "td.npy")


@pytest.mark.parametrize("content", ["pickled", "junk", "nan"])
def test_checkpoint_errors_are_one_line_without_torch_advice(
    runner, tmp_path, cube, tiny_model, digest, content
):
    import torch

    from ras2s.weights import save_weights

    checkpoint = tmp_path / "bad.pt"
    if content == "pickled":
        torch.save({"model": torch.nn.Linear(2, 2)}, checkpoint)
    elif content == "junk":
        checkpoint.write_bytes(b"\0" * 100)
    else:
        broken = RAS2S_copy(tiny_model)
        with torch.no_grad():
            next(iter(broken.parameters()))[0] = float("nan")
        save_weights(broken, checkpoint)
    _npy(tmp_path / "c.npy", cube)
    args = ["denoise", tmp_path / "c.npy", "--layout", "BHW", "--weights", checkpoint]
    _refused(runner, tmp_path, digest, args, "bad.pt")
    result = runner.invoke(main, [str(a) for a in args])
    assert "weights_only" not in result.output


def RAS2S_copy(model):  # noqa: N802 - a deep copy of the session's tiny model
    import copy

    return copy.deepcopy(model)


# class 6: fail before the network runs


@pytest.mark.parametrize(
    ("output", "dtype", "expect"),
    [
        ("o.xyz", np.float32, "unknown output extension"),
        ("pngout", np.float32, "PNG holds only"),
        ("o.mat", np.float16, "MATLAB has no float16"),
        ("o.hdr", np.int8, "ENVI has no int8"),
        ("o.hdr", np.float32, "already exists"),  # its o.img is there
    ],
)
def test_output_problems_found_before_the_network_runs(
    runner, tmp_path, cube, tiny_weights, digest, monkeypatch, output, dtype, expect
):
    import ras2s.inference

    def never(*args, **kwargs):
        raise AssertionError("the network ran")

    monkeypatch.setattr(ras2s.inference, "run_tiled", never)
    _npy(tmp_path / "c.npy", cube.astype(dtype))
    if expect == "already exists":
        (tmp_path / "o.img").write_bytes(b"keep")
    args = ["denoise", tmp_path / "c.npy", "-o", tmp_path / output, "--layout", "BHW"]
    _refused(runner, tmp_path, digest, [*args, "--weights", tiny_weights], expect)


def test_an_error_about_the_array_names_its_file(runner, tmp_path, rng, tiny_weights, digest):
    _npy(tmp_path / "tiny.npy", 1e-310 * rng.random((4, 16, 16)))  # range float64 cannot map
    args = ["denoise", tmp_path / "tiny.npy", "--layout", "BHW", "--weights", tiny_weights]
    _refused(runner, tmp_path, digest, args, "tiny.npy: ")


class _BrightDiverges(torch.nn.Module):
    """Identity on inputs within [-0.5, 1.5]; 'diverges' (x 1e6) on anything brighter."""

    def forward(self, x):
        return x * 1e6 if float(x.abs().max()) > 1.5 else x


def test_a_diverging_network_falls_back_with_one_warning_and_a_record(
    runner, tmp_path, rng, monkeypatch
):
    import json

    import ras2s.weights

    cube = (rng.random((40, 24, 24)) * 100).astype(np.float32)
    cube[:, 0, 0] = 1000.0  # one bright pixel: percentiles put it far above 1
    source = tmp_path / "bright.npy"
    np.save(source, cube)
    model = _BrightDiverges()
    model.card, model.precision = {"path": None}, "fp32"
    monkeypatch.setattr(ras2s.weights, "load_model", lambda *a, **k: model)
    args = ["denoise", source, "--layout", "BHW", "--normalise", "percentile"]
    strict = _invoke(runner, *args, "-o", tmp_path / "strict.npy", "--strict")
    assert strict.exit_code == 2 and "diverge" in strict.output
    assert not (tmp_path / "strict.npy").exists() and not (tmp_path / "strict.npy.json").exists()
    result = _invoke(runner, *args, "-o", tmp_path / "out.npy")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "diverged on the whole cube with 'percentile'" in warnings[0]
    assert "'minmax' normalisation instead" in warnings[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), cube, rtol=1e-5, atol=1e-2)
    record = json.loads((tmp_path / "out.npy.json").read_text())
    assert record["normalise"] == "minmax" and record["band_window"] == 31
    assert [(f["normalise"], f["band_window"]) for f in record["fallback"]] == [
        ("percentile", None),
        ("percentile", 31),
    ]
    assert len(record["warnings"]) == 1 and warnings[0].endswith(": " + record["warnings"][0])


def test_every_output_has_a_sidecar_saying_how_it_was_made(runner, tmp_path, cube, tiny_weights):
    import json

    source = tmp_path / "scene.npy"
    np.save(source, cube)
    result = _invoke(runner, "denoise", source, "--layout", "BHW", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "scene_denoised.npy.json").read_text())
    assert record["input"]["shape"] == list(cube.shape) and record["method"] == "ras2s"
    assert record["normalise"] == "clean" and record["fallback"] == []
    lo, hi = record["range"]
    first = record["first_pass_range"] or record["range"]  # the estimate, maybe widened
    assert cube.min() <= first[0] < first[1] <= cube.max() and lo <= first[0] < first[1] <= hi
    assert len(record["weights"]["sha256"]) == 64
    # the sidecar is an output too: an existing one is not replaced without --force
    (tmp_path / "again.npy.json").write_text("{}")
    again = _invoke(
        runner,
        "denoise",
        source,
        "--layout",
        "BHW",
        "--weights",
        tiny_weights,
        "-o",
        tmp_path / "again.npy",
    )
    assert again.exit_code == 2 and "again.npy.json" in again.output
    assert not (tmp_path / "again.npy").exists()


def test_cog_writes_a_cloud_optimized_tiff_and_refuses_other_formats(
    runner, tmp_path, cube, tiny_weights
):
    tifffile = pytest.importorskip("tifffile")
    source = tmp_path / "scene.npy"
    np.save(source, cube)
    args = ["denoise", source, "--layout", "BHW", "--weights", tiny_weights, "--cog"]
    bad = _invoke(runner, *args, "-o", tmp_path / "out.npy")
    assert bad.exit_code == 2 and "--cog writes TIFF outputs" in bad.output
    assert not (tmp_path / "out.npy").exists()
    result = _invoke(runner, *args, "-o", tmp_path / "out.tif")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert read_cube(tmp_path / "out.tif").data.shape == cube.shape


@pytest.mark.parametrize(("asked", "used"), [("auto", "minmax"), ("percentile", "percentile")])
def test_a_classical_method_records_the_normalisation_it_used(runner, tmp_path, cube, asked, used):
    import json

    pytest.importorskip("skimage")
    source = tmp_path / "scene.npy"
    np.save(source, cube)
    args = ["denoise", source, "--layout", "BHW", "--method", "tv", "--normalise", asked]
    result = _invoke(runner, *args, "-o", tmp_path / "out.npy")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out.npy.json").read_text())
    assert record["method"] == "tv" and record["normalise"] == used


def test_info_reads_a_cube_in_strips_never_whole(runner, tmp_path, monkeypatch):
    """``ras2s info`` on a cube larger than its strips: no read holds the whole cube."""
    from ras2s.io.dataset import CubeSource

    cube = np.random.default_rng(1).random((8, 200, 64), dtype=np.float32)
    np.save(tmp_path / "big.npy", cube)
    largest = []
    take = CubeSource._take

    def recording(self, key):
        out = take(self, key)
        largest.append(out.size)
        return out

    monkeypatch.setattr(CubeSource, "_take", recording)
    big = tmp_path / "big.npy"
    result = _invoke(runner, "info", big, "--layout", "BHW", "--max-memory", "256K", "--json")
    assert result.exit_code == 0, result.output
    assert largest and max(largest) < cube.size / 4
    import json

    fields = json.loads(result.output)
    assert (fields["min"], fields["max"]) == (float(cube.min()), float(cube.max()))


def test_a_streamed_cube_gets_its_preview_too(runner, tmp_path, tiny_weights):
    """Streamed (over half of --max-memory): the same preview as the in-memory run."""
    from PIL import Image

    cube = np.random.default_rng(3).random((6, 60, 48), dtype=np.float32)
    np.save(tmp_path / "s.npy", cube)
    base = ["denoise", tmp_path / "s.npy", "--layout", "BHW", "--weights", tiny_weights, "-q"]
    base += ["--tile", "32", "--tile-workers", "1", "--threads", "1"]
    images = {}
    for name, memory in (("memory", "1G"), ("streamed", "100K")):
        out, png = tmp_path / f"{name}.npy", tmp_path / f"{name}.png"
        result = _invoke(runner, *base, "-o", out, "--max-memory", memory, "--preview", png)
        assert result.exit_code == 0, result.output
        sidecar = (tmp_path / f"{name}.npy.json").read_text()
        assert ('"streamed": true' in sidecar) == (name == "streamed")
        images[name] = np.asarray(Image.open(png)).astype(int)
    assert images["memory"].shape == images["streamed"].shape
    assert np.abs(images["memory"] - images["streamed"]).max() <= 1
