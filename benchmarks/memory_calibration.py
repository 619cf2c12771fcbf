"""Peak RSS growth of one RAS2S forward pass (C=14) for a few tile shapes.

Each measurement runs in a fresh subprocess so ``ru_maxrss`` starts clean, once with
glibc's default allocator behaviour and once with ``return_freed_memory_to_the_system()``
(what the ``ras2s`` command uses). Prints bytes
per pixel and per pixel-band, and the estimate ``ras2s.inference.network_bytes`` gives,
so the estimate can be checked to stay above the measurement.

    python benchmarks/memory_calibration.py
"""

from __future__ import annotations

import itertools
import subprocess
import sys

CHILD = """
import resource, sys, torch
from ras2s.inference import return_freed_memory_to_the_system
from ras2s.model import RAS2S
torch.set_num_threads(2)
if sys.argv[3] == "eager":
    return_freed_memory_to_the_system()
bands, side = int(sys.argv[1]), int(sys.argv[2])
model = RAS2S().eval()
x = torch.rand(1, bands, side, side)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.inference_mode():
    model(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
"""

SHAPES = [(8, 256), (31, 128), (31, 256), (62, 256), (191, 128)]


def main() -> None:
    from ras2s.inference import network_bytes

    header = ("bands", "side", "allocator", "MiB", "B/px", "B/px/band", "estimate/measured")
    print("{:>5} {:>5} {:>13} {:>7} {:>7} {:>9} {:>18}".format(*header))
    for (bands, side), mode in itertools.product(SHAPES, ("eager", "glibc-default")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(bands), str(side), mode],
            check=True,
            capture_output=True,
            text=True,
        )
        grown = int(out.stdout.strip())
        pixels = side * side
        ratio = network_bytes(bands, pixels) / grown
        print(
            f"{bands:5d} {side:5d} {mode:>13} {grown / 2**20:7.0f} {grown / pixels:7.0f} "
            f"{grown / pixels / bands:9.0f} {ratio:18.2f}"
        )


if __name__ == "__main__":
    main()
