"""Tiled versus whole-image denoising on a real cube: output difference and MPSNR change.

RAS2S uses whole-image statistics (HFComp's normalised channel attention, global pooling
in region learning), so tiles see slightly different statistics than the whole image.
This script measures what that costs on a real cube with seeded noise.

    python benchmarks/tiling_accuracy.py --cube ../shared/data/CAVE_cloth/cloth_ms_256.mat \
        --weights ../shared/reference/s2s_official.pth --tiles 64,128 --overlap 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ras2s import metrics, noise
from ras2s.inference import denoise
from ras2s.io import read_cube
from ras2s.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cube", required=True)
    parser.add_argument("--key", default=None)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--case", default="noniid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiles", default="64,128")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    clean = read_cube(args.cube, key=args.key).data.astype(np.float32)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = noise.add_noise(clean, args.case, rng=args.seed)
    model = load_model(args.weights)
    print(f"cube {args.cube} {clean.shape}, noise {args.case} seed {args.seed}")
    print(f"noisy MPSNR {metrics.mpsnr(noisy, clean):.3f} dB")

    start = time.perf_counter()
    side = max(clean.shape[1:])
    whole = denoise(noisy, model=model, tile=side, overlap=0)
    t_whole = time.perf_counter() - start
    psnr_whole = metrics.mpsnr(whole, clean)
    print(f"whole image: MPSNR {psnr_whole:.3f} dB, {t_whole:.1f} s")
    print(
        f"{'tile':>5} {'overlap':>7} {'max|tiled-whole|':>17} {'mean|tiled-whole|':>18} "
        f"{'MPSNR':>8} {'dMPSNR':>8} {'seconds':>8}"
    )
    for tile in (int(t) for t in args.tiles.split(",")):
        start = time.perf_counter()
        tiled = denoise(noisy, model=model, tile=tile, overlap=args.overlap)
        seconds = time.perf_counter() - start
        psnr = metrics.mpsnr(tiled, clean)
        diff = np.abs(tiled - whole)
        print(
            f"{tile:5d} {args.overlap:7d} {diff.max():17.4f} {diff.mean():18.5f} "
            f"{psnr:8.3f} {psnr - psnr_whole:8.3f} {seconds:8.1f}"
        )


if __name__ == "__main__":
    main()
