"""Files per second: one process with one thread versus a dask LocalCluster of N x 1 thread.

Makes ``--files`` cubes of ``--size`` x ``--size`` x 31 from real data (crops of the
CAVE cubes in ../shared/data with seeded Gaussian noise, sigma 0.05 of the range;
synthetic smooth cubes when the data is absent), then denoises them twice with the
same weights:

- **serial**: :func:`ras2s.batch.denoise_serially` in this process, 1 torch thread;
- **dask**: :func:`ras2s.distributed.denoise_on_cluster` on a ``LocalCluster`` of
  ``--workers`` processes x 1 thread (started and warmed up -- weights loaded on each
  worker -- before the clock starts; the start-up is printed apart).

The two alternate ``--repeats`` times (so that a burst of outside load hits both).
Prints the best wall time of each, files/s, megavoxels/s and the ratio (issue 23's
target: 2 workers >= 1.8x one), every run's time, and the largest difference between
the runs' outputs. A third run, alternated with the two, is the ceiling without dask: a
plain ``multiprocessing`` pool of ``--workers`` processes x 1 thread, each taking the
next file (what the machine's cores give to independent processes); the dask run's
share of it is printed too.

``--compare`` also measures how the dask array path (``ras2s.denoise`` on a chunked
dask array: chunks with halos) differs from the numpy path (the whole image, one tile)
on one real cube, as a fraction of the range mapped to [0, 1], for ``minmax`` (the same
range on both paths) and ``clean`` (the default; the numpy path may take a second pass
the dask path does not), with each path's MPSNR against the clean cube.

``--one-cube SIDE`` measures one cube's tiles spread over the cluster instead
(:class:`ras2s.distributed.ClusterTiles`, what ``--dask`` does with one file): a
``(31, SIDE, SIDE)`` cube tiled from the CAVE cubes, denoised here with 1 torch thread
and with its tiles on the ``LocalCluster``, with ``--tile``-pixel tiles; besides the
wall times it prints this process's own CPU time per tile (reading, normalising,
blending: the share that does not spread, which bounds the speed-up at the network's
time per tile over it).

    python benchmarks/dask_batch.py --files 8 --size 128 --workers 2 --repeats 3 --compare
    python benchmarks/dask_batch.py --one-cube 768 --tile 256 --workers 2 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("RAS2S_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SHARED = SHARED / "data"
CAVE = [
    SHARED / "CAVE_cloth" / "cloth_ms_256.mat",
    SHARED / "CAVE_chart_and_stuffed_toy" / "chart_and_stuffed_toy_ms_256.mat",
]


def real_cubes() -> list[np.ndarray]:
    """The CAVE cubes, bands first, float64 in [0, 1]; empty when ../shared is absent."""
    from ras2s.io import read_cube

    cubes = []
    for path in CAVE:
        if path.exists():
            data = read_cube(path).data.astype(np.float64)
            cubes.append((data - data.min()) / (data.max() - data.min()))
    return cubes


def make_files(folder: Path, count: int, size: int, rng: np.random.Generator) -> tuple[list, str]:
    """``count`` noisy uint16 ``(31, size, size)`` cubes as .npy files; and where from."""
    from ras2s.io import write_cube

    sources = real_cubes()
    origin = "crops of " + ", ".join(p.name for p in CAVE) if sources else "synthetic"
    if not sources:
        y, x = np.mgrid[0:256, 0:256] / 256
        lam = np.linspace(0, 1, 31)[:, None, None]
        sources = [0.5 + 0.4 * np.sin(6 * x + 3 * lam) * np.cos(4 * y)]
    files = []
    for k in range(count):
        cube = sources[k % len(sources)]
        top = rng.integers(0, cube.shape[1] - size + 1)
        left = rng.integers(0, cube.shape[2] - size + 1)
        crop = cube[:, top : top + size, left : left + size]
        noisy = np.clip(crop + 0.05 * rng.standard_normal(crop.shape), 0, 1)
        path = folder / f"crop{k}.npy"
        write_cube(path, np.rint(noisy * 4000 + 100).astype(np.uint16))
        files.append(path)
    return files, origin


def serial_runner(settings):
    """A function timing one serial run (1 torch thread, the model loaded beforehand)."""
    import torch

    from ras2s.batch import denoise_serially
    from ras2s.weights import load_model

    torch.set_num_threads(1)
    model = load_model(settings.weights)

    def run(sources, targets):
        start = time.perf_counter()
        results = list(denoise_serially(sources, targets, settings, model))
        return time.perf_counter() - start, results

    return run


_POOL_STATE: dict = {}


def _pool_init(weights: str) -> None:
    """A plain pool process: 1 torch thread, the model loaded before the clock.

    The local cluster's nannies run in this script's process and put dask's
    ``MALLOC_TRIM_THRESHOLD_`` in its environment, which the pool's processes inherit:
    they get glibc's thresholds back as ras2s's own workers do (the network ran 2.3x
    slower in them without it).
    """
    import torch

    from ras2s.distributed import tune_malloc
    from ras2s.weights import load_model

    tune_malloc()
    torch.set_num_threads(1)
    _POOL_STATE["model"] = load_model(weights)


def _pool_ready(seconds: float) -> None:
    time.sleep(seconds)  # holds a process, so that every one of them has started


def _pool_file(job) -> None:
    from ras2s.batch import denoise_file

    source, target, settings = job
    denoise_file(source, target, settings, _POOL_STATE["model"], None)


def pool_runner(stack: contextlib.ExitStack, settings, workers: int):
    """A plain process pool (no dask): each process takes the next file, 1 thread each.

    What the machine's cores give to independent single-threaded processes, the same
    dynamic order as the cluster: the ceiling a dask cluster of as many workers can reach.
    """
    import multiprocessing

    pool = stack.enter_context(
        multiprocessing.get_context("spawn").Pool(
            workers, initializer=_pool_init, initargs=(settings.weights,)
        )
    )
    pool.map(_pool_ready, [0.5] * workers, chunksize=1)

    def run(sources, targets):
        start = time.perf_counter()
        jobs = [(s, t, settings) for s, t in zip(sources, targets, strict=True)]
        list(pool.imap_unordered(_pool_file, jobs, chunksize=1))
        return time.perf_counter() - start, None

    return run


def cluster_runner(stack: contextlib.ExitStack, settings, workers: int):
    """Start a LocalCluster (weights loaded on each worker); a function timing one run."""
    from distributed import Client, LocalCluster

    from ras2s.distributed import denoise_on_cluster, worker_model

    start = time.perf_counter()
    cluster = stack.enter_context(
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    )
    client = stack.enter_context(Client(cluster))
    client.run(worker_model, settings.weights, settings.device, settings.precision)
    started = time.perf_counter() - start

    def run(sources, targets):
        start = time.perf_counter()
        results = list(denoise_on_cluster(sources, targets, settings, client))
        return time.perf_counter() - start, results

    return started, run


def max_diff(first: list[Path], second: list[Path]) -> float:
    """Largest |a - b| over the pairs of outputs, in the outputs' units."""
    worst = 0.0
    for a, b in zip(first, second, strict=True):
        worst = max(worst, float(np.abs(np.load(a).astype(float) - np.load(b).astype(float)).max()))
    return worst


def compare(weights: str, chunk: int, overlap: int) -> None:
    """The dask array path versus the numpy path on one real cube (see the docstring)."""
    import dask.array as da
    import torch

    import ras2s
    from ras2s.metrics import mpsnr

    torch.set_num_threads(os.cpu_count() or 1)
    cubes = real_cubes()
    if not cubes:
        print("compare: ../shared/data is absent; skipped")
        return
    clean = cubes[0]
    rng = np.random.default_rng(0)
    noisy = np.rint(np.clip(clean + 0.05 * rng.standard_normal(clean.shape), 0, 1) * 4000 + 100)
    noisy = noisy.astype(np.uint16)
    reference = clean * 4000 + 100
    model = ras2s.load_model(weights, precision="fp32")
    x = da.from_array(noisy, chunks=(31, chunk, chunk))
    print(
        f"\ncompare: {CAVE[0].name} {noisy.shape} uint16, sigma 0.05, chunks {chunk} x {chunk}, "
        f"overlap {overlap}, vs the numpy path (one whole-image tile)"
    )
    print(
        f"{'normalise':>10} {'2nd pass':>8} {'max|diff|/range':>15} {'mean':>9} "
        f"{'MPSNR numpy':>11} {'MPSNR dask':>10}"
    )
    for how in ("minmax", "clean"):
        report: dict = {}
        ref = ras2s.denoise(noisy, model=model, normalise=how, report=report)
        got = ras2s.denoise(x, model=model, normalise=how, overlap=overlap).compute()
        lo, hi = report["range"]
        diff = np.abs(got.astype(float) - ref.astype(float)) / (hi - lo)
        scores = [mpsnr(out.astype(float), reference, data_range=4000.0) for out in (ref, got)]
        second = "yes" if report.get("first_pass_range") else "no"
        print(
            f"{how:>10} {second:>8} {diff.max():>15.2e} {diff.mean():>9.1e} "
            f"{scores[0]:>11.2f} {scores[1]:>10.2f}"
        )
    # for scale: the numpy path's own blended tiles of the chunk's size, against one tile
    tiled = ras2s.denoise(noisy, model=model, normalise="minmax", tile=chunk, overlap=overlap)
    ref = ras2s.denoise(noisy, model=model, normalise="minmax", report=report)
    lo, hi = report["range"]
    diff = np.abs(tiled.astype(float) - ref.astype(float)) / (hi - lo)
    score = mpsnr(tiled.astype(float), reference, data_range=4000.0)
    print(
        f"for scale, the numpy path in blended {chunk} x {chunk} tiles (overlap {overlap}) vs "
        f"one tile, minmax: max {diff.max():.2e}, mean {diff.mean():.1e}, MPSNR {score:.2f}"
    )


def one_cube(args, stack: contextlib.ExitStack) -> None:
    """One cube: its tiles in this process against its tiles on the cluster."""
    import torch

    import ras2s
    from ras2s.batch import DenoiseSettings
    from ras2s.distributed import ClusterTiles
    from ras2s.weights import load_model

    rng = np.random.default_rng(0)
    sources = real_cubes() or [rng.random((31, 256, 256))]
    side = args.one_cube
    cube = np.empty((31, side, side), np.float32)
    for y in range(0, side, 256):
        for x in range(0, side, 256):
            block = sources[(y // 256 + x // 256) % len(sources)]
            h, w = min(256, side - y), min(256, side - x)
            cube[:, y : y + h, x : x + w] = block[:, :h, :w]
    cube += rng.normal(0, 0.05, cube.shape).astype(np.float32)
    torch.set_num_threads(1)
    model = load_model(args.weights)
    settings = DenoiseSettings(weights=args.weights, threads=1)
    started, _ = cluster_runner(stack, settings, args.workers)
    from distributed import get_client

    runner = ClusterTiles(get_client(), threads=1)
    options = dict(model=model, tile=args.tile, overlap=args.overlap, normalise="minmax")
    tiles = []
    times: dict[str, list[tuple[float, float]]] = {"here": [], "cluster": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, workers in (("here", 1), ("cluster", runner)):
            wall, cpu = time.perf_counter(), time.process_time()
            out = ras2s.denoise(
                cube, **options, tile_workers=workers, on_tile=lambda d, t: tiles.append(t)
            )
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            outputs[name] = out
    count = tiles[-1]
    print(
        f"one cube 31 x {side} x {side} (CAVE tiles + noise), {count} tiles of {args.tile} px, "
        f"weights {args.weights}; cluster of {args.workers} x 1 thread started in {started:.1f} s"
    )
    here = min(t[0] for t in times["here"])
    for name, runs in times.items():
        best = min(runs)
        print(
            f"{name:>8}: best {best[0]:7.2f} s wall, this process's CPU {best[1]:7.2f} s "
            f"({1000 * best[1] / count:.0f} ms per tile), vs here {here / best[0]:.2f}x; "
            f"all: {' '.join(f'{w:.1f}' for w, _ in runs)}"
        )
    network = here / count
    client = min(t[1] for t in times["cluster"]) / count
    diff = float(np.abs(outputs["here"] - outputs["cluster"]).max())
    print(
        f"network {network:.2f} s per tile here; the client's own {1000 * client:.0f} ms per "
        f"tile bounds the speed-up at about {network / max(client, 1e-9):.0f}x; "
        f"max |here - cluster| {diff:.2e} (range {float(np.ptp(outputs['here'])):.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="default")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--one-cube", type=int, default=None, metavar="SIDE")
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args()
    if args.one_cube:
        with contextlib.ExitStack() as stack:
            one_cube(args, stack)
        return

    from ras2s.batch import DenoiseSettings

    rng = np.random.default_rng(0)
    with (
        tempfile.TemporaryDirectory(prefix="ras2s-dask-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        folder = Path(tmp)
        sources, origin = make_files(folder, args.files, args.size, rng)
        settings = DenoiseSettings(weights=args.weights, threads=1, layout="BHW", force=True)
        serial = [folder / f"{p.stem}_serial.npy" for p in sources]
        spread = [folder / f"{p.stem}_dask.npy" for p in sources]
        voxels = 31 * args.size * args.size * args.files
        print(
            f"{args.files} files of 31 x {args.size} x {args.size} ({origin}), weights "
            f"{args.weights}, {os.cpu_count()} cores, load average before "
            f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
        one_run = serial_runner(settings)
        started, many_run = cluster_runner(stack, settings, args.workers)
        pool_run = pool_runner(stack, settings, args.workers)
        pooled = [folder / f"{p.stem}_pool.npy" for p in sources]
        ones, manys, pools = [], [], []
        for _ in range(args.repeats):  # alternated: a burst of outside load hits all three
            seconds, results = one_run(sources, serial)
            assert all(r.error is None for r in results), [r.error for r in results]
            ones.append(seconds)
            seconds, results = many_run(sources, spread)
            assert all(r.error is None for r in results), [r.error for r in results]
            manys.append(seconds)
            pools.append(pool_run(sources, pooled)[0])
        one, many, pool = min(ones), min(manys), min(pools)
        print(
            f"{'run (best of ' + str(args.repeats) + ')':>28} {'seconds':>8} {'files/s':>8} "
            f"{'Mvox/s':>7} {'ratio':>6}  all runs (s)"
        )
        label = f"dask, {args.workers} workers x 1 thread"
        ceiling = f"no dask: pool of {args.workers} x 1 thread"
        for name, best, runs, ratio in (
            ("serial, 1 process x 1 thread", one, ones, 1.0),
            (label, many, manys, one / many),
            (ceiling, pool, pools, one / pool),
        ):
            print(
                f"{name:>28} {best:>8.2f} {args.files / best:>8.3f} {voxels / best / 1e6:>7.3f} "
                f"{ratio:>6.2f}  {' '.join(f'{t:.2f}' for t in runs)}"
            )
        print(
            f"cluster start-up (not timed above): {started:.1f} s; "
            f"max |serial - dask| over the outputs: {max_diff(serial, spread):g}, "
            f"|serial - pool| {max_diff(serial, pooled):g} (uint16 units); "
            f"dask reaches {pool / many:.2f} of the pool's throughput; "
            f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
    if args.compare:
        compare(args.weights, args.chunk, args.overlap)


if __name__ == "__main__":
    main()
