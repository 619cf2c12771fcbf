"""Numeric precision of the network: ``fp32``, ``bf16``, or ``auto``.

- ``fp32``: exact to rounding (parity with the authors' checkpoint within 1e-4).
- ``bf16``: convolutions and most activations in bfloat16 (the recurrent states, the
  gates, the region selection); the attention matrices, the candidate activation and the
  output residual sum in float32. On a CPU with AVX512-BF16 (measured: AMD Zen 5, no
  AMX) it is about 1.5x faster than ``fp32`` and costs about 0.13 dB MPSNR on real cubes
  with non-i.i.d. or mixed noise (worst case measured 0.22 dB); see docs/performance.md.
  Most of that loss is the rounding of every convolution's input to 8 bits of mantissa
  (0.06 dB alone), so no arrangement of bf16 convolutions meets the accuracy budget.
- ``auto`` (the default): the precision that meets the accuracy budget of the project
  (mean |dMPSNR| <= 0.05 dB against fp32, worst <= 0.1 dB) at the best speed. bf16 does
  not meet it, so ``auto`` is fp32 for inference on every device; it stays the
  name to use, so that a future bf16 path that meets the budget is picked up without a
  change of command line. Training (``ras2s train --precision auto``) is different:
  there ``auto`` means Lightning's ``bf16-mixed`` where the device computes bfloat16
  natively, because a seeded 200-step run reached the same validation MPSNR as
  float32 (20.18 vs 20.20 dB) in less time.

Native bfloat16 means a CPU with AVX512-BF16 or AMX-BF16 instructions (PyTorch's oneDNN
kernels use them) or a CUDA GPU that supports it (Ampere and newer); elsewhere bfloat16
is emulated and slower than float32.

In every precision the network's 4-D parameters are stored channels-last and its
activations stay channels-last from the first convolution to the output, so every
convolution runs on oneDNN's (or cuDNN's) NHWC kernels without layout conversions.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has AVX512-BF16 or AMX-BF16 instructions.

    Read from ``/proc/cpuinfo`` (cheap: the CLI's ``--help`` uses it without importing
    torch); elsewhere from PyTorch's own CPU checks.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively (see the module docstring)."""
    if str(device).split(":")[0] == "cpu":
        return cpu_has_native_bf16()
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


# bf16 inference measured against fp32 on real cubes (docs/performance.md): mean
# |dMPSNR| 0.13 dB, worst 0.22 dB, outside the budget of 0.05 / 0.1 dB.
BF16_MEETS_ACCURACY_BUDGET = False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``"auto"`` -> the precision used for inference on ``device``; others as given.

    ``"auto"`` is ``"bf16"`` only where the device computes bfloat16 natively and the
    bf16 path meets the accuracy budget (it does not yet: ``"fp32"``). Anything but
    ``"auto"``, ``"fp32"`` and ``"bf16"`` is an error.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if BF16_MEETS_ACCURACY_BUDGET and native_bf16(device) else "fp32"


def describe_auto(device: str = "cpu") -> str:
    """One line saying what ``auto`` picks on ``device`` and why."""
    chosen = resolve_precision("auto", device)
    where = "this CPU" if str(device) == "cpu" else str(device)
    if chosen == "bf16":
        return f"auto picks bf16 on {where}"
    if native_bf16(device):
        return (
            f"auto picks fp32 on {where}: bf16 is native here, about 1.5x faster, but "
            "costs about 0.13 dB (ask for it with --precision bf16)"
        )
    return f"auto picks fp32 on {where} (no native bfloat16)"


def apply_precision(
    model: nn.Module, precision: str = "auto", device: str | torch.device = "cpu"
) -> nn.Module:
    """Move ``model`` to ``device`` in the resolved precision, 4-D parameters channels-last.

    Returns the same module (modified in place). ``model.precision`` records the choice.
    """
    import torch

    resolved = resolve_precision(precision, device)
    model.to(device=device, dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[resolved])
    for parameter in model.parameters():
        if parameter.ndim == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
    model.precision = resolved
    return model


def training_precision(value: str, accelerator: str = "auto") -> str:
    """Lightning's ``precision`` for ``ras2s train --precision``.

    ``"auto"`` -> ``"bf16-mixed"`` where the training device computes bfloat16
    natively, else ``"32"``; Lightning's own values (``"32"``, ``"bf16-mixed"``,
    ``"16-mixed"``, ...) pass through.
    """
    if value != "auto":
        return value
    device = "cpu"
    if accelerator in ("auto", "gpu", "cuda"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16-mixed" if native_bf16(device) else "32"
