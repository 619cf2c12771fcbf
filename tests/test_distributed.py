"""Files and chunks over a dask.distributed cluster of worker processes (ras2s.distributed)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("distributed", reason="distributed is not installed (extra: ras2s[scale])")
da = pytest.importorskip("dask.array", reason="dask is not installed (extra: ras2s[scale])")

import ras2s  # noqa: E402
from ras2s.batch import DenoiseSettings, denoise_serially  # noqa: E402
from ras2s.cli import main  # noqa: E402
from ras2s.distributed import ClusterTiles, denoise_on_cluster, parse_address  # noqa: E402
from ras2s.errors import InputError  # noqa: E402
from ras2s.io import read_cube, write_cube  # noqa: E402
from ras2s.weights import load_model  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes, 1 thread each, shared by this module."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as local:
        yield local


def _batch(folder, rng, count=5):
    """``count`` small cubes of mixed formats, sizes and dtypes."""
    folder.mkdir()
    for i in range(count):
        size = 16 + 4 * i
        cube = rng.random((6, size, size)) * 900 + 100
        dtype = np.uint16 if i % 2 else np.float32
        write_cube(folder / f"scene{i}.{'mat' if i % 2 else 'npy'}", cube.astype(dtype))
    return sorted(folder.iterdir())


def _assert_same_outputs(first, second, names):
    for name in names:
        a, b = read_cube(first / name).data, read_cube(second / name).data
        assert a.dtype == b.dtype and a.shape == b.shape
        span = float(a.max()) - float(a.min())
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
        assert diff <= 1e-6 * span or (a.dtype.kind in "iu" and diff <= 1), (name, diff)


def test_parse_address():
    assert parse_address("local:3") == 3
    assert parse_address("local") == (os.cpu_count() or 1)
    assert parse_address("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    for bad in ("local:0", "local:x", "tcp://a b", "", "missing/scheduler.json"):
        with pytest.raises(InputError, match="--dask"):
            parse_address(bad)


def test_two_worker_processes_write_what_the_serial_run_writes(
    tmp_path, rng, tiny_weights, cluster
):
    from distributed import Client

    sources = _batch(tmp_path / "in", rng)
    serial, spread = tmp_path / "serial", tmp_path / "spread"
    serial.mkdir(), spread.mkdir()
    settings = DenoiseSettings(weights=str(tiny_weights))
    model = load_model(tiny_weights)
    names = [f"{p.stem}_denoised{p.suffix}" for p in sources]
    done = list(denoise_serially(sources, [serial / n for n in names], settings, model))
    assert all(r.error is None for r in done), [r.error for r in done]
    with Client(cluster) as client:  # a connected client is used as it is (left open)
        results = list(denoise_on_cluster(sources, [spread / n for n in names], settings, client))
        assert client.status == "running"
    assert all(r.error is None for r in results), [r.error for r in results]
    assert sorted(r.source for r in results) == sources  # each file once, under its own name
    pids = {r.pid for r in results}
    assert len(pids) == 2 and os.getpid() not in pids  # both worker processes took files
    assert sorted(p.name for p in spread.iterdir()) == sorted(
        [*names, *(f"{n}.json" for n in names)]
    )  # a sidecar each, no temporary file left
    _assert_same_outputs(serial, spread, names)


def test_chunks_on_the_cluster_and_weights_loaded_once_per_worker(rng, tiny_weights, cluster):
    from distributed import Client

    cube = (rng.random((6, 40, 36)) * 100).astype(np.float32)
    x = da.from_array(cube, chunks=(6, 20, 18))
    out = ras2s.denoise(x, weights=tiny_weights, normalise="minmax", overlap=8)
    here = out.compute(scheduler="threads")
    with Client(cluster) as client:
        spread = out.compute()  # the active client runs it
        cached = client.run(lambda: sorted(ras2s.distributed._MODELS))
        tuned = client.run(lambda: ras2s.distributed._MALLOC_TUNED)  # the nanny's env undone
    assert set(cached) == {w for w in cluster.scheduler_info["workers"]}
    assert all(len(keys) <= 1 for keys in cached.values()), cached  # one load per process
    assert sum(len(keys) for keys in cached.values()) >= 1
    assert any(tuned.values())
    np.testing.assert_allclose(spread, here, rtol=0, atol=1e-6 * float(np.ptp(here)))


def test_cli_dask_local_two_workers_equals_serial(tmp_path, rng, tiny_weights):
    _batch(tmp_path / "in", rng, count=4)
    serial, spread = tmp_path / "serial", tmp_path / "spread"
    serial.mkdir(), spread.mkdir()
    runner = CliRunner()
    common = ["denoise", str(tmp_path / "in"), "--weights", str(tiny_weights)]
    result = runner.invoke(main, [*common, "-o", str(serial), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, [*common, "-o", str(spread), "--dask", "local:2"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 4 and all("(worker " in line for line in lines), result.output
    names = sorted(p.name for p in serial.iterdir() if not p.name.endswith(".json"))
    _assert_same_outputs(serial, spread, names)


@pytest.mark.parametrize("how", ["address", "scheduler file"])
def test_cli_a_bad_file_is_reported_as_with_workers(tmp_path, rng, tiny_weights, cluster, how):
    address = cluster.scheduler_address
    if how == "scheduler file":  # what `dask scheduler --scheduler-file` writes (its address)
        (tmp_path / "scheduler.json").write_text(json.dumps({"address": address}))
        address = str(tmp_path / "scheduler.json")
    sources = _batch(tmp_path / "in", rng, count=3)
    (tmp_path / "in" / "broken.mat").write_bytes(b"not a mat file")
    out = tmp_path / "out"
    out.mkdir()
    args = ["denoise", *map(str, sources), str(tmp_path / "in" / "broken.mat")]
    args += ["--weights", str(tiny_weights), "-o", str(out), "-q"]
    result = CliRunner().invoke(main, [*args, "--dask", address])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("ras2s: error")]
    assert len(errors) == 2, result.output
    assert "broken.mat" in errors[0] and errors[1] == "ras2s: error: 1 of 4 inputs failed"
    assert len(list(out.glob("*_denoised.*.json"))) == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dask", "local:0"], "at least 1 worker"),
        (["--dask", "local:two"], "scheduler address"),
        (["--dask", "local:2", "--workers", "2"], "exclude each other"),
    ],
)
def test_cli_bad_dask_options_are_one_line(tmp_path, rng, tiny_weights, extra, message):
    sources = _batch(tmp_path / "in", rng, count=2)
    args = ["denoise", *map(str, sources), "--weights", str(tiny_weights), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list((tmp_path / "in").glob("*_denoised*"))


def test_unreachable_scheduler_is_one_line_and_exit_2(tmp_path, rng, tiny_weights):
    sources = _batch(tmp_path / "in", rng, count=1)
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s")
    args = [sys.executable, "-m", "ras2s", "denoise", str(sources[0])]
    args += ["--weights", str(tiny_weights), "--dask", "tcp://127.0.0.1:9"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr
    assert done.stderr.startswith("ras2s: error: --dask tcp://127.0.0.1:9: no dask scheduler")
    assert not list((tmp_path / "in").glob("*_denoised*"))


def _tiles_run(client) -> dict:
    return client.run(lambda: ras2s.distributed.TILES_RUN)


def test_a_cubes_tiles_on_the_cluster_equal_this_process(rng, tiny_weights, cluster):
    from distributed import Client

    cube = (rng.random((6, 48, 40)) * 900 + 100).astype(np.float32)
    cube[:, :5, :7] = -1  # nodata, kept off the network and restored
    options = dict(weights=tiny_weights, tile=24, overlap=8, nodata=-1, normalise="clean")
    here = ras2s.denoise(cube, **options)
    report: dict = {}
    with Client(cluster) as client:
        before = _tiles_run(client)
        runner = ClusterTiles(client)
        assert runner.workers == 2
        spread = ras2s.denoise(cube, **options, tile_workers=runner, report=report)
        after = _tiles_run(client)
    ran = {w: after[w] - before[w] for w in after}
    assert all(n >= 1 for n in ran.values()), ran  # both workers took tiles
    assert report["tile_workers"] == 2 and report["tiles_on"].startswith("dask ")
    np.testing.assert_allclose(spread, here, rtol=0, atol=1e-6 * float(np.ptp(here)))
    np.testing.assert_array_equal(spread[:, :5, :7], -1)


@pytest.mark.parametrize("max_memory", [2 << 30, 200_000])  # in memory; streamed
def test_one_file_on_the_cluster_is_split_into_tiles(
    tmp_path, rng, tiny_weights, cluster, max_memory
):
    from distributed import Client

    source = tmp_path / "scene.npy"
    np.save(source, (rng.random((6, 64, 56)) * 900 + 100).astype(np.float32))
    settings = DenoiseSettings(
        weights=str(tiny_weights), tile=24, overlap=8, max_memory=max_memory, layout="BHW"
    )
    model = load_model(tiny_weights)
    serial, spread = tmp_path / "serial.npy", tmp_path / "spread.npy"
    (done,) = denoise_serially([source], [serial], settings, model)
    assert done.error is None, done.error
    with Client(cluster) as client:
        before = _tiles_run(client)
        (result,) = denoise_on_cluster([source], [spread], settings, client)
        after = _tiles_run(client)
    assert result.error is None and result.pid == os.getpid(), result  # written here
    assert sum(after.values()) - sum(before.values()) >= 12  # 3 x 3 tiles or more
    a, b = np.load(serial), np.load(spread)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * float(np.ptp(a)))
    record = json.loads((tmp_path / "spread.npy.json").read_text())
    assert record["tiles_on"].startswith("dask ") and record["tile_workers"] == 2
    assert record["streamed"] is (max_memory < 1 << 20)


def test_cli_dask_split_files_or_tiles(tmp_path, rng, tiny_weights, cluster):
    source = tmp_path / "scene.npy"
    np.save(source, (rng.random((6, 40, 40)) * 900 + 100).astype(np.float32))
    common = ["denoise", str(source), "--weights", str(tiny_weights), "--tile", "24", "-q"]
    common += ["--dask", cluster.scheduler_address]
    made = {}
    for split in ("files", "tiles"):
        target = tmp_path / f"{split}.npy"
        result = CliRunner().invoke(main, [*common, "-o", str(target), "--dask-split", split])
        assert result.exit_code == 0, result.output
        made[split] = json.loads(target.with_name(target.name + ".json").read_text())
        made[split]["data"] = np.load(target)
    assert made["files"]["tiles_on"] == "this process"
    assert made["tiles"]["tiles_on"].startswith("dask ")
    a, b = made["files"]["data"], made["tiles"]["data"]
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * float(np.ptp(a)))
