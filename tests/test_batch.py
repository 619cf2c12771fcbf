"""Many files: the shared-out split, and ``ras2s denoise --workers`` with two CPU processes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from ras2s.batch import DenoiseSettings, denoise_in_workers, split_between_workers
from ras2s.cli import main
from ras2s.io import read_cube, write_cube


def _folder_of_cubes(folder, rng, sizes):
    folder.mkdir()
    for i, size in enumerate(sizes):
        write_cube(folder / f"scene{i}.mat", (rng.random((5, size, size)) * 100).astype(np.float32))


def test_split_gives_every_file_to_exactly_one_worker_largest_first(tmp_path):
    sizes = [10, 500, 30, 400, 20]
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(b"x" * size)
        paths.append(path)
    shares = split_between_workers(paths, 2)
    assert sorted(i for share in shares for i in share) == list(range(5))
    assert shares == [[1, 2, 0], [3, 4]]  # 500, 30, 10 | 400, 20
    assert split_between_workers(paths[:1], 3) == [[0], [], []]


def test_two_worker_processes_each_write_their_files_once(tmp_path, rng, tiny_weights):
    src = tmp_path / "in"
    _folder_of_cubes(src, rng, [24, 32, 28, 20])
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    serial.mkdir(), parallel.mkdir()
    runner = CliRunner()
    common = ["denoise", str(src), "--weights", str(tiny_weights)]
    result = runner.invoke(main, [*common, "-o", str(serial), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, [*common, "-o", str(parallel), "--workers", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "(worker 0)" in result.output and "(worker 1)" in result.output
    names = sorted(p.name for p in parallel.iterdir() if p.suffix == ".mat")
    assert names == [f"scene{i}_denoised.mat" for i in range(4)]
    assert sorted(p.name for p in parallel.iterdir()) == sorted(
        [*names, *(f"{n}.json" for n in names)]
    )  # a sidecar each, no temp files left
    for name in names:
        a, b = read_cube(serial / name).data, read_cube(parallel / name).data
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)


def test_worker_processes_are_separate_and_report_bad_files(tmp_path, rng, tiny_weights):
    src = tmp_path / "in"
    _folder_of_cubes(src, rng, [24, 20, 16])
    (src / "broken.mat").write_bytes(b"not a mat file")
    sources = sorted(src.iterdir())
    targets = [tmp_path / f"{p.stem}_out.mat" for p in sources]
    settings = DenoiseSettings(weights=str(tiny_weights), threads=1)
    results = list(denoise_in_workers(sources, targets, settings, workers=2))
    assert sorted(r.source.name for r in results) == sorted(p.name for p in sources)
    pids = {r.pid for r in results}
    assert len(pids) == 2 and os.getpid() not in pids
    failed = [r for r in results if r.error is not None]
    assert [r.source.name for r in failed] == ["broken.mat"], [r.error for r in failed]
    assert "broken.mat" in failed[0].error
    assert sorted(p.name for p in tmp_path.glob("*_out.mat")) == [
        f"scene{i}_out.mat" for i in range(3)
    ]


@pytest.mark.parametrize("strip", [1, 3, 7, 50])
def test_a_streamed_preview_keeps_every_step_th_pixel_across_strips(monkeypatch, strip):
    import ras2s.batch as batch

    monkeypatch.setattr(batch, "PREVIEW_SIDE", 12)
    cube = np.arange(31 * 50 * 36, dtype=np.float32).reshape(31, 50, 36)
    thumbnail = batch.PreviewStrips(cube)
    assert thumbnail.step == 5  # 50 rows / 12
    for start in range(0, 50, strip):
        rows = slice(start, min(50, start + strip))
        thumbnail.add(rows, cube[:, rows] * 2)  # the "output" strip
    picked = list(thumbnail.bands)
    expected = cube[picked, ::5, ::5]
    np.testing.assert_array_equal(np.concatenate(thumbnail.before, 1), expected)
    np.testing.assert_array_equal(np.concatenate(thumbnail.after, 1), expected * 2)
