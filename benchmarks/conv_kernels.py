"""The building blocks of the fast path, timed alone: convolutions and elementwise ops.

Prints, for the shapes RAS2S runs (C = 14 channels, channels-last), the seconds and
multiply-accumulate rate of 3x3 convolutions in float32 and bfloat16, and the cost of the
elementwise ops between them (``tanh`` against ``sigmoid``, contiguous against
channel-sliced operands). CPU time of one thread, minimum of 5 repeats.

    python benchmarks/conv_kernels.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

CONVS = [
    (1, 14, 14, 128),
    (8, 14, 14, 128),
    (1, 14, 28, 128),
    (1, 14, 42, 128),
    (1, 56, 14, 128),
    (1, 14, 14, 256),
    (1, 16, 16, 128),
    (1, 32, 32, 128),
]


def cpu_seconds(fn, n: int = 30) -> float:
    """Minimum over 5 repeats of the mean CPU time of ``fn`` over ``n`` calls."""
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n)
    return best


def main() -> None:
    torch.set_num_threads(1)
    cl = torch.channels_last
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, 1 thread, CPU capability {capability}")
    columns = ("fp32 us", "GMAC/s", "bf16 us", "GMAC/s", "ratio")
    print(f"{'N x Cin -> Cout @ side':>24} " + " ".join(f"{c:>8}" for c in columns))
    for n, c_in, c_out, side in CONVS:
        row = []
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(n, c_in, side, side, dtype=dtype).contiguous(memory_format=cl)
            w = torch.randn(c_out, c_in, 3, 3, dtype=dtype).contiguous(memory_format=cl)
            seconds = cpu_seconds(lambda x=x, w=w: F.conv2d(x, w, padding=1))
            row += [seconds, n * c_in * c_out * 9 * side * side / seconds / 1e9]
        name = f"{n} x {c_in} -> {c_out} @ {side}"
        cells = (row[0] * 1e6, row[1], row[2] * 1e6, row[3])
        print(f"{name:>24} " + " ".join(f"{c:8.0f}" for c in cells) + f" {row[0] / row[2]:8.2f}")
    print("elementwise on 14 x 128 x 128 (microseconds):")
    for dtype in (torch.float32, torch.bfloat16):
        print(f"  {str(dtype):>15}: {elementwise(dtype)}")


def elementwise(dtype: torch.dtype) -> str:
    """Microseconds of the elementwise ops of a GRU step on one 14 x 128 x 128 state."""
    cl = torch.channels_last
    a = torch.randn(1, 14, 128, 128, dtype=dtype).contiguous(memory_format=cl)
    b = torch.randn(1, 14, 128, 128, dtype=dtype).contiguous(memory_format=cl)
    wide = torch.randn(1, 42, 128, 128, dtype=dtype).contiguous(memory_format=cl)
    ops = {
        "add": lambda: a + b,
        "sigmoid": lambda: torch.sigmoid(a),
        "tanh": lambda: torch.tanh(a),
        "lerp": lambda: torch.lerp(a, b, b),
        "mul": lambda: a * b,
        "mul, channel slice": lambda: a * wide[:, 14:28],
    }
    return ", ".join(f"{k} {cpu_seconds(op, 100) * 1e6:.0f}" for k, op in ops.items())


if __name__ == "__main__":
    main()
