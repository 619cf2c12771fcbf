"""Lay out the training sources of the default weights (issue 12) from ../shared/data.

Makes ``OUT`` (default ``/tmp/ras2s_train/src``): symlinks to the clean cubes used for
training and validation, and two converted files (Samson's ``SamSon`` array, and Jasper
Ridge's ``Y`` reshaped column-major to 198 x 100 x 100). Nothing is copied into the
repository. Held out from training (validation only, and the held-out table of
docs/training-log.md, entry 8): CAVE cloth, AVIRIS San Diego (and abu-beach-2, a San Diego scene,
left out entirely) and HYDICE Urban: three sensors. Left out: the 17-band satellite
image (fewer than 31 bands).

    python training/prepare_sources.py --data ../shared/data --out /tmp/ras2s_train/src
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.io

from ras2s.io import read_cube

LINKS = [
    *(
        f"ABU/abu-{name}.mat"
        for name in (
            "airport-1",
            "airport-2",
            "airport-3",
            "airport-4",
            "beach-1",
            "beach-3",
            "urban-1",
            "urban-2",
            "urban-3",
            "urban-4",
        )
    ),
    "CAVE_KBR_crops/testMSI_1.mat",
    "CAVE_KBR_crops/testMSI_2.mat",
    "CAVE_KBR_crops/testMSI_3.mat",
    "CAVE_chart_and_stuffed_toy/chart_and_stuffed_toy_ms_256.mat",
    "MUUFL_Gulfport_anomaly_crop/MUUFL.mat",
    # held out: validation patches only
    "CAVE_cloth/cloth_ms_256.mat",
    "SanDiego_AVIRIS_anomaly_crop/sandiego.mat",
    "HYDICE_Urban_anomaly_crop/hydice.mat",
]
HELD_OUT = "cloth_ms_256,sandiego,hydice"


def main() -> None:
    """Make the links and the two converted files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/ras2s_train/src"))
    args = parser.parse_args()
    data = args.data.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    for relative in LINKS:
        link = args.out / Path(relative).name
        if not link.exists():
            link.symlink_to(data / relative)
    samson = read_cube(data / "Samson/Samson.mat", key="SamSon").data
    np.save(args.out / "Samson_SamSon.npy", samson.astype(np.float32))
    jasper = scipy.io.loadmat(data / "JasperRidge/jasperRidge2_R198.mat")["Y"]
    jasper = jasper.reshape(198, 100, 100, order="F")
    np.save(args.out / "JasperRidge_R198.npy", jasper.astype(np.float32))
    print(f"{args.out}: {len(LINKS) + 2} cubes; hold out with --val-list {HELD_OUT}")


if __name__ == "__main__":
    main()
