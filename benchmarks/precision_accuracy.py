"""MPSNR of ras2s in bf16 against fp32 on the real cubes, for the precision budget.

For every real cube of ``--data`` with at least 31 bands, normalised to [0, 1] as a whole,
a centre crop of each ``--sizes`` (the first 31 bands) gets each noise case (seeded); the
same noisy crop is denoised by the same weights in fp32 and in bf16 and both are scored
against the clean crop. Prints one row per (cube, size, case) and the summary the budget
is stated in: mean |dMPSNR| and the worst |dMPSNR| (budget: 0.05 dB and 0.1 dB).

    python benchmarks/precision_accuracy.py --data ../shared/data \\
        --weights ../shared/reference/s2s_official.pth
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ras2s.cube import centre_crop
from ras2s.io import find_cubes, read_cube
from ras2s.metrics import mpsnr
from ras2s.noise import add_noise
from ras2s.weights import load_model

KEYS = {"Samson": "SamSon"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", default="official")
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--cases", default="noniid,mixture")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {p: load_model(args.weights, precision=p) for p in ("fp32", "bf16")}
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'cube':>28} {'size':>9} {'case':>8} {'fp32 dB':>8} {'bf16 dB':>8} {'d dB':>7}")
    deltas = []
    for path in find_cubes(args.data):
        try:
            cube = read_cube(path, key=KEYS.get(path.stem)).data
        except Exception as err:  # noqa: BLE001 - a cube that cannot be read is listed
            print(f"{path.stem:>28} skipped: {err}")
            continue
        if cube.shape[0] < 31:
            continue
        cube = cube.astype(np.float64)
        clean_cube = ((cube - cube.min()) / (cube.max() - cube.min())).astype(np.float32)
        done = set()
        for size in sizes:
            clean = np.ascontiguousarray(centre_crop(clean_cube[:31], (size, size)))
            if clean.shape in done:  # a cube smaller than the crop: already scored whole
                continue
            done.add(clean.shape)
            for case in args.cases.split(","):
                noisy = add_noise(clean, case, rng=0).astype(np.float32)
                x = torch.from_numpy(noisy)[None]
                scores = {}
                with torch.inference_mode():
                    for name, model in models.items():
                        scores[name] = mpsnr(model(x)[0].numpy(), clean, data_range=1.0)
                delta = scores["bf16"] - scores["fp32"]
                deltas.append(delta)
                shape = f"{clean.shape[1]}x{clean.shape[2]}"
                print(
                    f"{path.stem:>28} {shape:>9} {case:>8} {scores['fp32']:8.2f} "
                    f"{scores['bf16']:8.2f} {delta:+7.3f}"
                )
    deltas = np.abs(deltas)
    print(
        f"{len(deltas)} runs: mean |dMPSNR| {deltas.mean():.3f} dB, worst {deltas.max():.3f} dB "
        "(budget 0.05 / 0.1)"
    )


if __name__ == "__main__":
    main()
