"""Throughput of tiled inference at the default memory budget versus one whole-image pass.

For each size, the same seeded cube goes through ``ras2s.denoise`` three ways in one
process: with the default budget (balanced tiles), with the largest tile the budget
allows passed explicitly (the unbalanced plan, for comparison), and whole (a budget big
enough for one tile). Prints seconds, voxels per second, the ratios to whole-image
throughput and the largest difference between the tiled and whole outputs.

    python benchmarks/tiled_throughput.py --weights ../shared/reference/s2s_official.pth \
        --sizes 31x512x512,31x768x768 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ras2s.inference import DEFAULT_MAX_MEMORY, choose_tile, fixed_bytes, plan_tiles
from ras2s.tiling import tile_grid
from ras2s.weights import load_model


def timed(cube: np.ndarray, model, **options):
    """Seconds and output of one ``ras2s.denoise`` call."""
    from ras2s import denoise

    start = time.perf_counter()
    out = denoise(cube, model=model, **options)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="default")
    parser.add_argument("--sizes", default="31x512x512")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-memory", type=int, default=DEFAULT_MAX_MEMORY)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    print(
        f"torch {torch.__version__}, threads {args.threads}, "
        f"budget {args.max_memory / 2**30:.1f} GiB"
    )
    print(
        f"{'size':>12} {'plan':>22} {'tiles':>5} {'area':>5} {'seconds':>8} "
        f"{'Mvox/s':>7} {'vs whole':>8} {'max|diff|':>9}"
    )
    for text in args.sizes.split(","):
        bands, h, w = (int(v) for v in text.split("x"))
        cube = np.random.default_rng(0).random((bands, h, w), dtype=np.float32)
        planned, overlap = plan_tiles(cube.shape, cube.dtype, max_memory=args.max_memory)
        largest = choose_tile(
            bands, h, w, max_memory=args.max_memory, fixed_bytes=fixed_bytes(cube.shape, cube.dtype)
        )
        whole_s, whole = timed(cube, model, max_memory=1 << 50)
        plans = [("whole image", (h, w), whole_s, whole)]
        if largest < max(h, w):
            seconds, out = timed(cube, model, max_memory=args.max_memory)
            plans.append(("default budget", planned, seconds, out))
            seconds, out = timed(cube, model, tile=largest, overlap=overlap)
            plans.append(("largest tile", (min(largest, h), min(largest, w)), seconds, out))
        for name, tile, seconds, out in plans:
            tiles = tile_grid(h, w, tile, overlap if tile != (h, w) else 0)
            area = len(tiles) * min(tile[0], h) * min(tile[1], w) / (h * w)
            diff = float(np.abs(out - whole).max())
            print(
                f"{text:>12} {name + ' ' + 'x'.join(map(str, tile)):>22} {len(tiles):>5} "
                f"{area:5.2f} {seconds:8.2f} {cube.size / seconds / 1e6:7.2f} "
                f"{whole_s / seconds:8.2f} {diff:9.2e}"
            )


if __name__ == "__main__":
    main()
