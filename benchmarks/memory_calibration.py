"""Peak RSS growth of one RAS2S forward pass (C=14) for a few tile shapes.

Each measurement runs in a fresh subprocess so ``ru_maxrss`` starts clean, in each
precision (fp32 and bf16, channels-last as ``ras2s.load_model`` prepares it), with glibc's
default allocator behaviour (what ``ras2s`` uses). Prints bytes per pixel and per
pixel-band, the seconds of the pass, and the ratio of the estimate
``ras2s.inference.network_bytes`` to the measurement, which must stay above 1.

    python benchmarks/memory_calibration.py
"""

from __future__ import annotations

import itertools
import subprocess
import sys

CHILD = """
import resource, sys, time, torch
from ras2s.model import RAS2S
from ras2s.precision import apply_precision
torch.set_num_threads(2)
bands, side = int(sys.argv[1]), int(sys.argv[2])
model = apply_precision(RAS2S().eval(), sys.argv[3])
x = torch.rand(1, bands, side, side)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
with torch.inference_mode():
    model(x)
seconds = time.perf_counter() - start
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, seconds)
"""

SHAPES = [(8, 256), (31, 128), (31, 256), (62, 256), (191, 128)]


def main() -> None:
    from ras2s.inference import network_bytes

    header = (
        "bands",
        "side",
        "precision",
        "MiB",
        "B/px",
        "B/px/band",
        "seconds",
        "estimate/measured",
    )
    print("{:>5} {:>5} {:>13} {:>7} {:>7} {:>9} {:>7} {:>18}".format(*header))
    for (bands, side), mode in itertools.product(SHAPES, ("fp32", "bf16")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(bands), str(side), mode],
            check=True,
            capture_output=True,
            text=True,
        )
        grown_text, seconds_text = out.stdout.split()[-2:]
        grown, seconds = int(grown_text), float(seconds_text)
        pixels = side * side
        ratio = network_bytes(bands, pixels, precision=mode) / grown
        print(
            f"{bands:5d} {side:5d} {mode:>13} {grown / 2**20:7.0f} {grown / pixels:7.0f} "
            f"{grown / pixels / bands:9.0f} {seconds:7.1f} {ratio:18.2f}"
        )


if __name__ == "__main__":
    main()
