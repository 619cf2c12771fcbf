"""How much each normalisation of a noisy cube costs against the true clean range.

For each cube (scaled to [0, 1] as a whole: the clean range), each noise case of
``ras2s noise`` and each set of weights, the noisy cube is denoised by ``ras2s.denoise``
with ``normalise`` = ``none`` (the clean range itself: the paper's protocol), ``clean``
(the estimate, the shipped ``auto``), ``percentile`` and ``minmax``, and scored by MPSNR
against the clean cube. Prints one JSON line per (weights, cube, case) and a table.

    python benchmarks/normalisation.py --weights default,official \\
        --data ../shared/data/CAVE_cloth/cloth_ms_256.mat \\
        --data ../shared/data/SanDiego_AVIRIS_anomaly_crop/sandiego.mat \\
        --data ../shared/data/HYDICE_Urban_anomaly_crop/hydice.mat -o norm.jsonl

Noise seed of (cube, case): the first 4 bytes of sha256(f"{name}:{case}"), big-endian,
``name`` the file's stem up to its first underscore (``cloth_ms_256`` -> ``cloth``).
One thread by default (``--threads``); whole cubes, no crop.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import ras2s
from ras2s import metrics

CASES = ("noniid", "mixture", "iid30", "stripe", "deadline", "impulse")
HOWS = ("none", "clean", "percentile", "minmax")


def seed_of(name: str, case: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{name}:{case}".encode()).digest()[:4], "big")


def clean01(path: Path) -> np.ndarray:
    x = ras2s.read_cube(path).data.astype(np.float64)
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def score(estimate: np.ndarray, clean: np.ndarray) -> float:
    return float(metrics.mpsnr(estimate.astype(np.float32), clean, data_range=1.0))


def run(weights: str, path: Path, case: str, hows: tuple[str, ...] = HOWS) -> dict:
    model = ras2s.load_model(weights, precision="fp32")
    clean = clean01(path)
    name = path.stem.split("_")[0]
    noisy = ras2s.add_noise(clean, case, rng=seed_of(name, case)).astype(np.float32)
    row: dict = {"weights": weights, "cube": name, "case": case, "noisy": score(noisy, clean)}
    for how in hows:
        report: dict = {}
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = ras2s.denoise(noisy, model=model, normalise=how, report=report)
        row[how] = score(out, clean)
        row[f"{how}_range"] = report.get("range")
        row[f"{how}_passes"] = 2 if report.get("first_pass_range") else 1
        row[f"{how}_fallback"] = len(report.get("fallback", []))
        row[f"{how}_s"] = round(time.perf_counter() - start, 1)
    return row


def table(rows: list[dict], hows: tuple[str, ...] = HOWS) -> str:
    lines = ["| weights | cube | case | noisy | " + " | ".join(hows) + " |"]
    lines.append("|---|---|---|" + "---|" * (len(hows) + 1))
    for r in rows:
        values = " | ".join(f"{r[h]:.2f}" for h in ("noisy", *hows))
        lines.append(f"| {r['weights']} | {r['cube']} | {r['case']} | {values} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default")
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-o", "--output", default=None, help="append JSON lines here")
    parser.add_argument("--hows", default=",".join(HOWS), help="normalisations to run")
    args = parser.parse_args()
    hows = tuple(args.hows.split(","))
    torch.set_num_threads(args.threads)
    rows = []
    for weights in args.weights.split(","):
        for data in args.data:
            for case in args.cases.split(","):
                row = run(weights, Path(data), case, hows)
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.output:
                    with open(args.output, "a") as handle:
                        handle.write(json.dumps(row) + "\n")
    print(table(rows, hows))


if __name__ == "__main__":
    main()
