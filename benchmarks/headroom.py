"""How far beyond [0, 1] a set of weights stays stable on real raw cubes (the headroom).

``ras2s denoise`` maps a cube's *estimated clean* range to [0, 1] (``normalise="clean"``);
small bright targets that the estimate's filters average away then lie above 1 (on the
ABU urban cubes of ../shared/data up to 3.02 and 4.15). Recurrent weights can diverge on
such values (docs/training-log.md, entry 19). For each cube and each ceiling ``t`` this
script maps the cube by its estimated clean range, scales it so that its maximum is
``t`` and denoises it as it stands (``normalise="none"``, the whole cube in one network
run, fp32, ``strict``: no fallback), printing one JSON line per (weights, cube, t) with
``held`` (true/false) and the output's range, then the first ceiling that diverged per
cube (``none of ...`` when every ceiling held).

    python benchmarks/headroom.py --weights default,W.pt \\
        --data ../shared/data/ABU/abu-urban-2.mat --data ../shared/data/ABU/abu-urban-4.mat \\
        --ceilings 1,2,3,4,6

One thread by default (``--threads``). The cubes are raw: no noise is added.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import ras2s
from ras2s.errors import DivergenceError
from ras2s.ranges import clean_range


def clean_normalised(path: Path) -> np.ndarray:
    """``(bands, H, W)`` float32: the raw cube mapped by its estimated clean range."""
    cube = np.nan_to_num(ras2s.read_cube(path).data.astype(np.float64))
    lo, hi = clean_range(cube)
    return ((cube - lo) / (hi - lo)).astype(np.float32)


def probe(model: torch.nn.Module, cube: np.ndarray, ceiling: float) -> dict:
    """Denoise ``cube`` scaled so its maximum is ``ceiling``; whether the weights held."""
    scaled = cube * np.float32(ceiling / float(cube.max()))
    try:
        out = ras2s.denoise(scaled, model=model, normalise="none", band_window=None, strict=True)
    except DivergenceError as err:
        return {"held": False, "detail": err.detail}
    return {"held": True, "out": [round(float(out.min()), 4), round(float(out.max()), 4)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default", help="comma-separated weights")
    parser.add_argument("--data", action="append", type=Path, required=True)
    parser.add_argument("--ceilings", default="1,2,3,4,6")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ceilings = [float(c) for c in args.ceilings.split(",")]
    summary = []
    for weights in args.weights.split(","):
        model = ras2s.load_model(weights, precision="fp32")
        for path in args.data:
            cube = clean_normalised(path)
            first_failure = None
            for ceiling in ceilings:
                row = {"weights": weights, "cube": path.stem, "max": float(cube.max())}
                row |= {"ceiling": ceiling} | probe(model, cube, ceiling)
                print(json.dumps(row), flush=True)
                if not row["held"] and first_failure is None:
                    first_failure = ceiling
            summary.append((weights, path.stem, first_failure))
    print("\nweights | cube | first ceiling that diverged")
    for weights, cube, failure in summary:
        print(f"{weights} | {cube} | {'none of ' + args.ceilings if failure is None else failure}")


if __name__ == "__main__":
    main()
