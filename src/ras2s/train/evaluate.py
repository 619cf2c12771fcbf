"""Held-out evaluation of weights per noise case (the table of ``docs/training.md``).

For each held-out cube: min-max normalise the clean cube to [0, 1], add each noise case
with ``rng=seed``, denoise with :func:`ras2s.denoise` (``model=``), and score MPSNR
(data range 1), MSSIM (``paper`` convention) and SAM (radians) against the clean cube,
for the noisy input and every set of weights.

Run as ``python -m ras2s.train.evaluate FILE... --weights NAME=PATH ... [--crop FILE=N]
[--json out]`` (``--crop`` takes a centre crop of the normalised clean cube first).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np

from .. import metrics
from ..data.patches import centre_crop, minmax_normalise
from ..inference import denoise
from ..io import read_cube
from ..noise import add_noise
from ..weights import load_model

CASES = ("noniid", "stripe", "deadline", "impulse", "mixture", "iid30")


def score(out: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """MPSNR, MSSIM (paper convention) and SAM (radians) of ``out`` against ``clean``."""
    return {
        "mpsnr": float(metrics.mpsnr(out, clean)),
        "mssim": float(metrics.mssim(out, clean, convention="paper")),
        "sam": float(metrics.sam(out, clean)),
    }


def evaluate(
    files: Sequence[str],
    weights: dict[str, str],
    *,
    cases: Sequence[str] = CASES,
    seed: int = 0,
    keys: dict[str, str] | None = None,
    crop: dict[str, int] | None = None,
    log=print,
) -> list[dict]:
    """One row per (file, case, method) with the three scores and the run time."""
    models = {name: load_model(path) for name, path in weights.items()}
    rows = []
    for f in files:
        clean = minmax_normalise(read_cube(f, key=(keys or {}).get(f)).data)
        clean = np.ascontiguousarray(centre_crop(clean, (crop or {}).get(f)))
        for case in cases:
            noisy = add_noise(clean, case, rng=seed)
            rows.append(
                {
                    "file": f,
                    "case": case,
                    "method": "noisy",
                    "shape": list(clean.shape),
                    **score(noisy, clean),
                }
            )
            for name, model in models.items():
                t0 = time.monotonic()
                out = denoise(noisy, model=model)
                row = {
                    "file": f,
                    "case": case,
                    "method": name,
                    **score(out, clean),
                    "seconds": round(time.monotonic() - t0, 1),
                }
                rows.append(row)
                log(json.dumps(row))
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table: one line per (file, case), methods side by side."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = "| cube | case | " + " | ".join(f"{m} MPSNR / MSSIM / SAM" for m in methods) + " |"
    lines = [head, "|" + "---|" * (2 + len(methods))]
    keys = list(dict.fromkeys((r["file"], r["case"]) for r in rows))
    for f, case in keys:
        cells = []
        for m in methods:
            r = next(r for r in rows if (r["file"], r["case"], r["method"]) == (f, case, m))
            cells.append(f"{r['mpsnr']:.2f} / {r['mssim']:.4f} / {r['sam']:.4f}")
        name = f.rsplit("/", 1)[-1]
        lines.append(f"| {name} | {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m ras2s.train.evaluate")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--weights", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--crop",
        action="append",
        default=[],
        help="FILE=N: centre crop N x N of that cube (after normalising)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="Also write the rows here.")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    weights = dict(w.split("=", 1) for w in args.weights)
    crop = {f: int(n) for f, n in (c.rsplit("=", 1) for c in args.crop)}
    rows = evaluate(args.files, weights, cases=args.cases.split(","), seed=args.seed, crop=crop)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    print(markdown(rows))


if __name__ == "__main__":
    main()
