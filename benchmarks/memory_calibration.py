"""Peak RSS growth of one RAS2S forward pass (C=14) for a few tile shapes.

Each measurement runs in a fresh subprocess so ``ru_maxrss`` starts clean, once with
glibc's default allocator behaviour (what ``ras2s`` uses) and once with glibc's mmap
threshold fixed at 128 KiB ("eager return": every freed tensor goes straight back to the
system). Prints bytes per pixel and per pixel-band, the seconds of the pass, and the ratio
of the estimate ``ras2s.inference.network_bytes`` to the measurement, which must stay
above 1 for the default allocator.

    python benchmarks/memory_calibration.py
"""

from __future__ import annotations

import itertools
import subprocess
import sys

CHILD = """
import ctypes, resource, sys, time, torch
from ras2s.model import RAS2S
torch.set_num_threads(2)
if sys.argv[3] == "eager":
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
bands, side = int(sys.argv[1]), int(sys.argv[2])
model = RAS2S().eval()
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
        "allocator",
        "MiB",
        "B/px",
        "B/px/band",
        "seconds",
        "estimate/measured",
    )
    print("{:>5} {:>5} {:>13} {:>7} {:>7} {:>9} {:>7} {:>18}".format(*header))
    for (bands, side), mode in itertools.product(SHAPES, ("glibc-default", "eager")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(bands), str(side), mode],
            check=True,
            capture_output=True,
            text=True,
        )
        grown_text, seconds_text = out.stdout.split()[-2:]
        grown, seconds = int(grown_text), float(seconds_text)
        pixels = side * side
        ratio = network_bytes(bands, pixels) / grown
        print(
            f"{bands:5d} {side:5d} {mode:>13} {grown / 2**20:7.0f} {grown / pixels:7.0f} "
            f"{grown / pixels / bands:9.0f} {seconds:7.1f} {ratio:18.2f}"
        )


if __name__ == "__main__":
    main()
