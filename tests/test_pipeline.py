"""The window pipeline: streamed equals in memory, strip-wise estimates, scratch, workers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ras2s.inference import denoise, denoise_windows
from ras2s.pipeline import (
    Masks,
    Prepared,
    Scratch,
    scan_missing,
    scan_output,
    scan_range,
)
from ras2s.ranges import clean_range

pytestmark = pytest.mark.usefixtures("one_thread")  # many small network runs


def _cube(rng, dtype=np.uint16, shape=(8, 100, 120)):
    cube = rng.random(shape) * 1000 + 50
    return cube.astype(dtype)


def _collect(source, model, **kwargs):
    out = np.zeros(source.shape, source.dtype)
    calls = []

    def write(rows, block):
        calls.append(rows)
        out[:, rows, :] = block

    report = {}
    denoise_windows(source, write, model=model, report=report, **kwargs)
    return out, calls, report


@pytest.mark.parametrize(
    "dtype, options",
    [
        (np.uint16, {}),
        (np.float32, {}),
        (np.uint16, {"nodata": 0}),
        (np.float32, {"nodata": float("nan")}),
        (np.int16, {"skip_bands": [0, 5]}),
        (np.uint16, {"nodata": 0, "skip_bands": [7], "normalise": "percentile"}),
        (np.float32, {"normalise": "minmax"}),
    ],
)
def test_streamed_equals_in_memory(tiny_model, rng, dtype, options):
    cube = _cube(rng, dtype)
    if "nodata" in options:  # a collar and a few holes
        cube[:, :9, :] = options["nodata"]
        cube[3, 50:52, 60:64] = options["nodata"]
        cube[:, :, 110:] = options["nodata"]
    plan = {"tile": 48, "overlap": 12}
    memory, _, first = _collect(cube, tiny_model, **plan, **options)
    streamed, calls, second = _collect(
        cube, tiny_model, **plan, **options, stream=True, max_memory=1 << 20
    )
    assert len(calls) > 3  # written strip by strip
    assert first["range"] == pytest.approx(second["range"], rel=1e-12)
    assert second["streamed"] is True and first["streamed"] is False
    span = first["range"][1] - first["range"][0]
    a, b = memory.astype(np.float64), streamed.astype(np.float64)
    same = np.isnan(a) & np.isnan(b)
    tolerance = 1 if np.dtype(dtype).kind in "iu" else 1e-6 * span
    assert np.all(same | (np.abs(a - b) <= tolerance))
    # and the public API gives the in-memory result
    np.testing.assert_array_equal(denoise(cube, model=tiny_model, **plan, **options), memory)


def test_the_clean_estimate_strip_by_strip_equals_the_whole_cube(rng):
    cube = rng.normal(0.5, 0.2, (9, 97, 61))
    whole = clean_range(cube)
    masks = Masks(list(range(9)), (0, 97, 0, 61))
    for rows in (1, 7, 8, 40, 97):
        found = scan_range(Prepared(cube, masks), clean=True, sample=False, rows=rows)
        assert found.clean == pytest.approx(whole, rel=1e-13, abs=1e-13)
        assert (found.lo, found.hi) == (cube.min(), cube.max())


def test_the_percentile_sample_strip_by_strip_is_the_strided_sample(rng, monkeypatch):
    import ras2s.pipeline as pipeline

    monkeypatch.setattr(pipeline, "PERCENTILE_SAMPLE", 1000)
    cube = rng.random((5, 41, 37))
    step = max(1, cube.size // 1000)
    masks = Masks(list(range(5)), (0, 41, 0, 37))
    for rows in (3, 41):
        found = scan_range(Prepared(cube, masks), clean=False, sample=True, rows=rows)
        np.testing.assert_array_equal(np.sort(found.sample), np.sort(cube.reshape(-1)[::step]))
    out = scan_output(cube.astype(np.float32), rows=4, sample=True)
    assert out.finite and out.lo == cube.astype(np.float32).min()
    assert out.sample.size == cube.reshape(-1)[::step].size


def test_the_scan_finds_nodata_box_and_fills(rng):
    cube = _cube(rng, np.uint16, (4, 30, 40))
    cube[:, :5, :] = 0
    cube[:, :, 35:] = 0
    cube[2] = 0  # a band with no valid value takes the mean of the others' means
    masks = scan_missing(cube, [0, 1, 2, 3], nodata=0, nan_policy="error", rows=7)
    assert masks.box == (5, 30, 0, 35)
    valid = cube[0][cube[0] != 0]
    assert masks.fills[0] == np.rint(valid.mean())
    assert masks.fills[2] == np.rint(np.nanmean(masks.means))
    filled = Prepared(cube, masks)[(slice(None), slice(None), slice(None))]
    assert filled.shape == (4, 25, 35) and not (filled == 0).any()


def test_nan_is_refused_or_filled(rng):
    cube = _cube(rng, np.float32, (3, 20, 20))
    cube[1, 4, 4] = np.nan
    with pytest.raises(Exception, match="1 NaN or Inf"):
        scan_missing(cube, [0, 1, 2], nodata=None, nan_policy="error", rows=5)
    with pytest.warns(UserWarning, match="replaced by their band's mean"):
        masks = scan_missing(cube, [0, 1, 2], nodata=None, nan_policy="fill", rows=5)
    block = Prepared(cube, masks)[(slice(None), slice(0, 10), slice(None))]
    assert np.isfinite(block).all()


def test_a_scratch_file_is_never_visible_and_holds_windows(tmp_path):
    with Scratch((3, 40, 50), tmp_path) as scratch:
        assert list(tmp_path.iterdir()) == []  # unlinked at once
        block = np.arange(3 * 10 * 20, dtype=np.float32).reshape(3, 10, 20)
        scratch[(slice(None), slice(5, 15), slice(30, 50))] = block
        np.testing.assert_array_equal(
            scratch[(slice(None), slice(5, 15), slice(30, 50))], block
        )
        assert scratch[(slice(None), slice(0, 5), slice(None))].shape == (3, 5, 50)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_streamed_run_writes_nothing(tiny_model, rng, tmp_path):
    cube = _cube(rng)
    calls = []

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        denoise_windows(
            cube,
            lambda rows, block: calls.append(rows),
            model=tiny_model,
            tile=64,
            overlap=16,
            stream=True,
            scratch_dir=tmp_path,
            on_tile=stop,
        )
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_tile_workers_give_the_one_process_result(tiny_model, rng):
    cube = _cube(rng, np.float32, (8, 96, 120))
    one, _, _ = _collect(cube, tiny_model, tile=48, overlap=16)
    two, _, report = _collect(cube, tiny_model, tile=48, overlap=16, tile_workers=2)
    span = report["range"][1] - report["range"][0]
    assert np.abs(one - two).max() <= 1e-5 * span


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5])
def test_tile_workers_are_checked(tiny_model, rng, bad):
    from ras2s.errors import InputError

    with pytest.raises(InputError, match="tile_workers"):
        denoise(_cube(rng, shape=(4, 32, 32)), model=tiny_model, tile_workers=bad)


def test_the_streamed_memory_bound_does_not_hold_the_cube(tiny_model, rng, tmp_path):
    """A memmap source: the passes read strips and tiles, never the whole file."""
    path = tmp_path / "cube.npy"
    np.save(path, _cube(rng, np.uint16, (6, 200, 120)))
    source = np.load(path, mmap_mode="r")
    out, calls, report = _collect(
        source, tiny_model, tile=64, overlap=16, stream=True, max_memory=1 << 20
    )
    assert report["streamed"] and len(calls) >= 10
    assert os.path.getsize(path) > 0 and out.any()


def _peak_rss_of_denoise(tmp_path, weights, side: int) -> tuple[int, int]:
    """Peak RSS (bytes) of ``ras2s denoise`` on a 4 x side x side float32 cube, its size."""
    import subprocess
    import sys

    source = tmp_path / f"cube{side}.npy"
    np.save(source, np.random.default_rng(side).random((4, side, side), dtype=np.float32))
    command = [
        sys.executable, "-m", "ras2s", "denoise", str(source),
        "-o", str(tmp_path / f"out{side}.npy"), "--weights", str(weights),
        "--max-memory", "2M", "--tile", "128", "--threads", "1",
        "--tile-workers", "1", "--normalise", "minmax",
    ]  # fmt: skip
    script = (
        "import resource, subprocess, sys; "
        f"r = subprocess.run({command!r}); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = (tmp_path / f"out{side}.npy.json").read_text()
    assert '"streamed": true' in record
    return int(done.stdout.split()[-1]) * 1024, source.stat().st_size


def test_peak_memory_does_not_grow_with_the_file(tmp_path, tiny_weights):
    """Two cubes larger than --max-memory, 5x apart: the peak RSS stays (nearly) flat.

    Held in memory, the larger cube would add its input, float32 output and result
    (3 x 10.5 MB) to the peak; streamed, only the blend's weight sum (4 bytes per pixel)
    and strip sizes grow.
    """
    small, small_bytes = _peak_rss_of_denoise(tmp_path, tiny_weights, 400)
    large, large_bytes = _peak_rss_of_denoise(tmp_path, tiny_weights, 900)
    assert large - small < 0.5 * (large_bytes - small_bytes), (small, large)


@pytest.mark.parametrize("nodata", [None, -1.0, float("nan")])
def test_scan_cube_in_strips_gives_the_in_memory_figures(rng, tmp_path, nodata):
    """``ras2s info``'s figures, read strip by strip, equal those of the whole array."""
    from ras2s.inference import normalisation_range, scan_cube
    from ras2s.io import open_cube

    cube = (rng.random((5, 90, 40)) * 300 + 20).astype(np.float32)
    cube[2, 10:13, 5:9] = np.inf
    if nodata is not None:
        cube[:, :7] = nodata
        cube[4, 50, 30] = nodata
    np.save(tmp_path / "c.npy", cube)
    with open_cube(tmp_path / "c.npy", layout="BHW") as source:
        found = scan_cube(source, "clean", nodata=nodata, max_memory=64 << 10)  # ~8 rows
    valid = np.isfinite(cube) & (True if nodata is None else ~_equal(cube, nodata))
    assert (found.lo, found.hi) == (cube[valid].min(), cube[valid].max())
    assert found.nonfinite == np.count_nonzero(~np.isfinite(cube))
    assert found.left_out == cube.size - np.count_nonzero(valid)
    how, lo, hi = found.normalise
    assert how == "clean"
    expected = normalisation_range(cube, "clean", nodata=nodata)
    assert (lo, hi) == pytest.approx(expected[1:], rel=1e-12)


def _equal(cube, value):
    return np.isnan(cube) if np.isnan(value) else cube == value


def test_scan_cube_of_only_nodata_says_so(tmp_path):
    from ras2s.inference import scan_cube

    found = scan_cube(np.full((3, 20, 20), -5.0), "minmax", nodata=-5.0)
    assert found.lo is found.hi is found.normalise is None
    assert found.left_out == 1200 and "holds only nodata (-5.0)" in found.why
