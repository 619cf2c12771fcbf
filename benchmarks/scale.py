"""Throughput and memory at scale: tile size, tile workers, whole cubes, streaming.

Five measurements, each printing figures and ratios measured side by side in one run
(docs/scale.md holds the results; state the machine with them):

``tiles``
    Network time per output voxel at tile sides 128..512 with a 32-pixel overlap, one
    PyTorch thread, CPU time of this process (``time.process_time``: little affected by
    other processes on the machine). The cost of a side ``s`` per output voxel is the
    tile's time divided by ``(s - overlap)**2 * bands``, the area each tile adds in a
    large cube.
``workers``
    The same N tiles through one process with T threads, and through
    :class:`ras2s.parallel.TilePool` with T single-threaded workers (wall time).
``cube``
    ``ras2s denoise`` on a synthetic-from-real cube (e.g. 2048 x 2048 x 31), as a
    subprocess: with the previous plan (largest tile the budget allows, one process,
    ``--tile-workers 1``) and with the shipped plan (``--tile-workers auto``, tiles
    capped for throughput): wall time, peak RSS of the process tree, ratio.
``stream``
    An ENVI cube made from real data, denoised in memory and streamed
    (``--max-memory`` smaller than the cube): peak RSS, time per voxel, ratio, and the
    largest difference between the two outputs.
``huge``
    One streamed ``ras2s denoise`` of a cube larger than this machine's RAM (as measured:
    31 x 10,300 x 10,300 float64 ENVI, 24.5 GiB, made from real data as for ``stream``
    and reused when ``--folder`` holds it): wall time, time per voxel, and the peak of the
    process tree's memory sampled from /proc every ``--sample`` seconds (RSS summed over
    the processes, which counts the libraries that the tile workers share once per
    process, and PSS, which shares them out), then ``ras2s info`` on the same file.
``passes``
    The statistics passes before the network (scan, range with the clean estimate) on
    an in-memory cube of ``--size``, in row strips of ``--max-memory / 8`` as a
    streamed run reads them, with 1 and with ``--threads`` threads filtering (wall
    time, best of ``--repeats``, ratio; the two estimates must be equal).

    python benchmarks/scale.py tiles --sides 128,192,256,384,512
    python benchmarks/scale.py workers --tiles 8
    python benchmarks/scale.py cube --size 2048 --bands 31
    python benchmarks/scale.py stream --size 1024 --bands 64 --max-memory 256M
    python benchmarks/scale.py passes --size 2048 --threads 2 --max-memory 2G
    python benchmarks/scale.py huge --size 10300 --dtype float64 --folder /data/big \
        --max-memory 4G --extra "--precision bf16"
    python benchmarks/scale.py stream --size 5900 --dtype float32 --compare-size 2048 \
        --max-memory 1G --big-memory 8G --extra "--tile-workers 1 --precision bf16"
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def real_texture(bands: int, size: int, seed: int = 0) -> np.ndarray:
    """A ``(bands, size, size)`` float32 cube in [0, 1] tiled from a real cube.

    The 256 x 256 x 31 CAVE cloth cube (../shared/data) tiled with random flips, plus
    Gaussian noise sigma 0.1; seeded random texture when the data is absent.
    """
    rng = np.random.default_rng(seed)
    source = SHARED / "CAVE_cloth" / "cloth_ms_256.mat"
    if source.exists():
        from ras2s.io import read_cube

        base = read_cube(source).data.astype(np.float32)
        base = (base - base.min()) / (base.max() - base.min())
    else:
        base = rng.random((31, 256, 256), dtype=np.float32)
    reps = -(-bands // base.shape[0])
    base = np.concatenate([base] * reps)[:bands]
    out = np.empty((bands, size, size), np.float32)
    step = base.shape[1]
    for y in range(0, size, step):
        for x in range(0, size, step):
            block = base[:, :: rng.choice([-1, 1]), :: rng.choice([-1, 1])]
            h, w = min(step, size - y), min(step, size - x)
            out[:, y : y + h, x : x + w] = block[:, :h, :w]
    out += rng.normal(0, 0.1, out.shape).astype(np.float32)
    return out


def bench_tiles(args) -> None:
    import torch

    from ras2s.inference import _run_network
    from ras2s.weights import load_model

    torch.set_num_threads(1)
    model = load_model(args.weights, precision=args.precision)
    cube = real_texture(args.bands, max(args.sides))
    print(f"torch {torch.__version__}, 1 thread, {args.bands} bands, overlap {args.overlap}")
    print(f"{'side':>5} {'cpu s/tile':>10} {'us/voxel':>9} {'us/out-voxel':>12} {'vs 256':>7}")
    rows = {}
    for side in args.sides:
        tile = np.ascontiguousarray(cube[:, :side, :side])
        _run_network(model, torch.device("cpu"), tile)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.process_time()
            _run_network(model, torch.device("cpu"), tile)
            times.append(time.process_time() - start)
        best = min(times)
        per_voxel = best / (side * side * args.bands) * 1e6
        per_out = best / ((side - args.overlap) ** 2 * args.bands) * 1e6
        rows[side] = (best, per_voxel, per_out)
    ref = rows.get(256, next(iter(rows.values())))[2]
    for side, (best, per_voxel, per_out) in rows.items():
        print(f"{side:>5} {best:>10.2f} {per_voxel:>9.3f} {per_out:>12.3f} {per_out / ref:>7.2f}")


def bench_workers(args) -> None:
    import torch

    from ras2s.inference import _run_network
    from ras2s.parallel import TilePool
    from ras2s.weights import load_model

    threads = args.threads
    model = load_model(args.weights, precision=args.precision)
    cube = real_texture(args.bands, args.side)
    tiles = [np.ascontiguousarray(np.roll(cube, k, axis=2)) for k in range(args.tiles)]
    torch.set_num_threads(threads)
    _run_network(model, torch.device("cpu"), tiles[0])
    start = time.perf_counter()
    serial = [_run_network(model, torch.device("cpu"), t) for t in tiles]
    one = time.perf_counter() - start
    start = time.perf_counter()
    with TilePool(model, None, threads) as pool:
        ready = time.perf_counter() - start
        parallel = list(pool(None, iter(tiles)))
    many = time.perf_counter() - start
    diff = max(float(np.abs(a - b).max()) for a, b in zip(serial, parallel, strict=True))
    print(f"{args.tiles} tiles of {args.bands}x{args.side}x{args.side}")
    print(f"one process, {threads} threads: {one:.1f} s")
    print(f"{threads} workers x 1 thread:   {many:.1f} s (of which start {ready:.1f} s)")
    print(f"throughput ratio: {one / many:.2f}x; max |diff| {diff:.2e}")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ras2s", "denoise", *args]


def bench_cube(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="ras2s-scale-"))
    cube = real_texture(args.bands, args.size)
    source = folder / "cube.npy"
    np.save(source, cube)
    print(f"{args.bands}x{args.size}x{args.size} float32, threads {args.threads}")
    common = ["--threads", str(args.threads), "--max-memory", args.max_memory, "--force"]
    runs = {
        "previous plan (largest tile, 1 process)": [
            "--tile-workers",
            "1",
            "--tile",
            str(args.previous_tile),
        ],
        "shipped plan (auto)": [],
        "shipped plan, --precision bf16": ["--precision", "bf16"],
    }
    results = {}
    for name, extra in runs.items():
        target = folder / f"out-{len(results)}.npy"
        wall, peak, code = _timed_cli(_cli(str(source), "-o", str(target), *common, *extra))
        results[name] = (wall, target)
        print(f"{name:>40}: {wall:7.1f} s  peak RSS {peak:.2f} GiB  exit {code}")
    (a, ta), *others = results.values()
    for name, (b, tb) in list(results.items())[1:]:
        diff = float(np.abs(np.load(ta) - np.load(tb)).max())
        print(f"{name}: speed-up {a / b:.2f}x; max |diff| to the first {diff:.2e} (range 0..1)")


def _texture_strips(bands: int, size: int, seed: int = 0):
    """``real_texture`` made strip by strip: yields ``(row0, (bands, h, size) float32)``.

    The same construction (the real cube, with its noise sigma 0.1, tiled with random
    flips), plus fresh noise sigma 0.05 per strip so that the tiles differ; a cube of
    several GiB is never held whole, nor its float64 noise.
    """
    rng = np.random.default_rng(seed)
    base = real_texture(min(bands, 31), 256, seed)  # the tile itself, with its noise
    reps = -(-bands // base.shape[0])
    base = np.concatenate([base] * reps)[:bands]
    step = base.shape[1]
    for y in range(0, size, step):
        h = min(step, size - y)
        strip = np.empty((bands, h, size), np.float32)
        for x in range(0, size, step):
            block = base[:, :: rng.choice([-1, 1]), :: rng.choice([-1, 1])]
            w = min(step, size - x)
            strip[:, :, x : x + w] = block[:, :h, :w]
        strip += rng.normal(0, 0.05, strip.shape).astype(np.float32)
        yield y, strip


def _write_envi(path: Path, bands: int, size: int, dtype: str) -> None:
    """A ``(bands, size, size)`` ENVI cube of ``dtype`` written strip by strip."""
    from ras2s.io import create_cube

    with create_cube(path, (bands, size, size), np.dtype(dtype)) as sink:
        for y, strip in _texture_strips(bands, size):
            if np.dtype(dtype).kind in "ui":
                strip = np.clip(strip * 4000 + 500, 0, 65535).astype(dtype)
            sink.write((slice(y, y + strip.shape[1]), slice(None)), strip)


def _timed_cli(command: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (GiB) of the ``ras2s`` process, exit code."""
    script = (
        "import resource, subprocess, sys; "
        f"r = subprocess.run({command!r}); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = int(done.stdout.split()[-1]) / 2**20 if done.stdout.split() else float("nan")
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
    return wall, peak, done.returncode


def bench_stream(args) -> None:
    """In memory (``--big-memory``) against streamed (``--max-memory``), per voxel.

    With ``--compare-size`` the in-memory run takes a smaller cube of the same texture
    (a cube of several GiB in memory would need several times its size in RAM and as
    long again); the ratio is then of the time per voxel, and the outputs are not
    compared. ``--extra`` passes the same options to both runs (e.g. a fixed
    ``--tile 256 --tile-workers 1 --precision bf16``).
    """
    folder = Path(args.folder or tempfile.mkdtemp(prefix="ras2s-stream-"))
    folder.mkdir(parents=True, exist_ok=True)
    extra = args.extra.split()
    sides = {"in memory": args.compare_size or args.size, "streamed": args.size}
    rows = []
    for name, memory in (("in memory", args.big_memory), ("streamed", args.max_memory)):
        side = sides[name]
        source = folder / f"cube-{side}.hdr"
        if not source.exists():
            start = time.perf_counter()
            _write_envi(source, args.bands, side, args.dtype)
            made = time.perf_counter() - start
            gib = os.path.getsize(source.with_suffix(".img")) / 2**30
            shape = f"{args.bands}x{side}x{side} {args.dtype}"
            print(f"made ENVI {shape}: {gib:.2f} GiB in {made:.0f} s")
        voxels = args.bands * side * side
        target = folder / f"{name.replace(' ', '_')}.hdr"
        command = _cli(
            str(source), "-o", str(target), "--max-memory", memory,
            "--threads", str(args.threads), "--force", *extra,
        )  # fmt: skip
        wall, peak, code = _timed_cli(command)
        rows.append((name, memory, wall / voxels, peak, target))
        print(
            f"{name:>10} {args.bands}x{side}x{side} --max-memory {memory:>5}: {wall:7.1f} s, "
            f"{wall / voxels * 1e6:.3f} us/voxel, peak RSS {peak:.2f} GiB, exit {code}",
            flush=True,
        )
    print(f"streamed / in memory, time per voxel: {rows[1][2] / rows[0][2]:.3f}")
    if sides["in memory"] == sides["streamed"]:
        from ras2s.io import read_cube

        a, b = (read_cube(r[4]).data.astype(np.float64) for r in rows)
        print(f"max |diff| between the outputs: {float(np.abs(a - b).max()):.3g}")


def _tree_memory(root: int) -> tuple[float, float]:
    """RSS summed over ``root`` and its descendants, and their summed PSS, in GiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    rss = pss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Rss:", "Pss:")):
                        kib = int(line.split()[1])
                        rss += kib * (line[0] == "R")
                        pss += kib * (line[0] == "P")
        except OSError:
            continue
    return rss / 2**20, pss / 2**20


def bench_huge(args) -> None:
    """A streamed run on a cube larger than RAM, with the process tree's memory sampled."""
    folder = Path(args.folder or tempfile.mkdtemp(prefix="ras2s-huge-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"cube-{args.size}.hdr"
    if not source.exists():
        start = time.perf_counter()
        _write_envi(source, args.bands, args.size, args.dtype)
        print(f"made ENVI in {time.perf_counter() - start:.0f} s", flush=True)
    gib = os.path.getsize(source.with_suffix(".img")) / 2**30
    with open("/proc/meminfo") as f:
        ram = int(f.readline().split()[1]) / 2**20
    voxels = args.bands * args.size * args.size
    shape = f"{args.bands}x{args.size}x{args.size} {args.dtype}"
    print(f"cube {shape}: {gib:.2f} GiB; RAM {ram:.2f} GiB")
    target = folder / "streamed.hdr"
    command = _cli(
        str(source), "-o", str(target), "--max-memory", args.max_memory,
        "--threads", str(args.threads), "--force", *args.extra.split(),
    )  # fmt: skip
    print(" ".join(command[1:]), flush=True)
    peak_rss = peak_pss = 0.0
    start = time.perf_counter()
    with open(folder / "denoise.stderr", "w") as log:
        run = subprocess.Popen(command, stderr=log)
        while run.poll() is None:
            rss, pss = _tree_memory(run.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(args.sample)
    wall = time.perf_counter() - start
    print(
        f"streamed: {wall:.0f} s ({wall / 3600:.2f} h), {wall / voxels * 1e6:.3f} us/voxel, "
        f"peak RSS of the tree {peak_rss:.2f} GiB, peak PSS {peak_pss:.2f} GiB, "
        f"exit {run.returncode}",
        flush=True,
    )
    info = [sys.executable, "-m", "ras2s", "info", str(source), "--max-memory", args.max_memory]
    wall, peak, code = _timed_cli(info)
    print(f"ras2s info: {wall:.0f} s, peak RSS {peak:.2f} GiB, exit {code}")


def bench_passes(args) -> None:
    """Scan and range passes, strip by strip, with 1 and ``--threads`` filter threads."""
    from ras2s.cli.options import parse_size
    from ras2s.inference import strip_plan
    from ras2s.pipeline import Prepared, scan_missing, scan_range

    cube = real_texture(args.bands, args.size)
    scan_rows, rows, _ = strip_plan(cube.shape, cube.dtype, parse_size(args.max_memory))
    keep = range(cube.shape[0])
    print(f"cube {cube.shape} float32, range strips of {rows} rows, {args.repeats} repeats")
    found = {}
    for threads in sorted({1, args.threads}):
        best = np.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            masks = scan_missing(cube, keep, nodata=None, nan_policy="error", rows=scan_rows)
            found[threads] = scan_range(
                Prepared(cube, masks), clean=True, sample=False, rows=rows, threads=threads
            ).clean
            best = min(best, time.perf_counter() - start)
        found.setdefault("time", {})[threads] = best
        print(f"{threads} thread(s): {best:.2f} s  ({best / cube.size * 1e9:.2f} ns/voxel)")
    times = found.pop("time")
    print(
        f"speed-up {times[1] / times[args.threads]:.2f}x; estimates equal: "
        f"{len(set(found.values())) == 1} {found[1]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["tiles", "workers", "cube", "stream", "huge", "passes"])
    parser.add_argument("--weights", default="default")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--bands", type=int, default=31)
    parser.add_argument("--sides", default="128,192,256,384,512")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--previous-tile", type=int, default=512)
    parser.add_argument("--max-memory", default="2G")
    parser.add_argument("--big-memory", default="20G")
    parser.add_argument("--dtype", default="uint16", help="stream: the ENVI cube's dtype")
    parser.add_argument("--compare-size", type=int, default=None, help="stream: in-memory side")
    parser.add_argument("--extra", default="", help="stream: options for both runs")
    parser.add_argument("--folder", default=None, help="stream: where the cubes go (reused)")
    parser.add_argument("--sample", type=float, default=5.0, help="huge: seconds between samples")
    args = parser.parse_args()
    args.sides = [int(s) for s in args.sides.split(",")]
    benches = {
        "tiles": bench_tiles,
        "workers": bench_workers,
        "cube": bench_cube,
        "stream": bench_stream,
        "huge": bench_huge,
        "passes": bench_passes,
    }
    benches[args.what](args)


if __name__ == "__main__":
    main()
