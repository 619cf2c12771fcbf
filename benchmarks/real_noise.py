"""No-reference comparison on real noisy cubes: noisy vs denoisers, sigma and stripes.

For each real cube (cropped so that it runs in seconds on a laptop CPU) this runs the
shipped default weights, the authors' checkpoint (a path), HyRes and optionally BM4D,
then :func:`ras2s.assess.summarise`: median estimated sigma and median stripe index
before and after (input data units), the median per-band sigma ratio, and the residual
correlation. It prints a Markdown table and writes each cube's assessment (per_band.csv,
summary.json, report.html) under ``--out``.

    python benchmarks/real_noise.py --data ../shared/data \
        --official ../shared/reference/s2s_official.pth --out /tmp/real_noise

Cubes: HYDICE Urban 80 x 100 crop (162 bands), ABU urban-1 (100 x 100, 204 bands),
San Diego 100 x 100 (189 bands), and the 17-band QRNN3D satellite image cropped to
128 x 128 at its top-left corner.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import ras2s
from ras2s.assess import band_table, summarise
from ras2s.inference import denoise_classical
from ras2s.report.assessment import write_assessment

CUBES = {
    "HYDICE Urban": ("HYDICE_Urban_anomaly_crop/hydice.mat", None),
    "ABU urban-1": ("ABU/abu-urban-1.mat", None),
    "San Diego": ("SanDiego_AVIRIS_anomaly_crop/sandiego.mat", None),
    "Satellite (17 b)": ("QRNN3D_Satellite/IMAGE.mat", 128),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--official", type=Path, default=Path("../shared/reference/s2s_official.pth")
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/real_noise"))
    parser.add_argument("--bm4d", action="store_true", help="Also run BM4D (slow).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {"default": ras2s.load_model("default"), "official": ras2s.load_model(args.official)}
    print(
        "| cube | crop (bands x H x W) | method | median sigma | median stripe index | "
        "sigma ratio | residual corr. | time (s) |"
    )
    print("|---|---|---|--:|--:|--:|--:|--:|")
    for label, (rel, crop) in CUBES.items():
        cube = ras2s.read_cube(args.data / rel).data
        if crop:
            cube = np.ascontiguousarray(cube[:, :crop, :crop])
        results, times = {}, {}
        for name, model in models.items():
            t0 = time.perf_counter()
            results[name] = ras2s.denoise(cube, model=model)
            times[name] = time.perf_counter() - t0
        methods = ["hyres"] + (["bm4d"] if args.bm4d else [])
        for method in methods:
            t0 = time.perf_counter()
            results[method] = denoise_classical(cube, method)
            times[method] = time.perf_counter() - t0
        rows = band_table(cube, results)
        summary = summarise(cube, results, rows=rows)
        shape = " x ".join(str(s) for s in cube.shape) + f" {cube.dtype}"
        for name, entry in summary["cubes"].items():

            def f(key, digits=3, entry=entry):
                v = entry.get(key)
                return "" if v is None else f"{v:.{digits}g}"

            t = f"{times[name]:.1f}" if name in times else ""
            print(
                f"| {label} | {shape} | {name} | {f('median_sigma')} | "
                f"{f('median_stripe_index')} | {f('sigma_ratio', 2)} | "
                f"{f('residual_correlation', 2)} | {t} |",
                flush=True,
            )
        slug = label.split(" (")[0].lower().replace(" ", "_").replace("-", "")
        write_assessment(
            args.out / slug,
            cube,
            results,
            report=not args.no_report,
            settings={"file": str(rel), "crop": crop},
        )


if __name__ == "__main__":
    main()
