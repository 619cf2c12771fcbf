"""Numeric precision of the network: ``fp32``, ``bf16``, or ``auto``.

``auto`` picks ``bf16`` where the device computes it natively and ``fp32`` elsewhere:

- a CPU with AVX512-BF16 or AMX-BF16 instructions (PyTorch's oneDNN kernels use them
  for bfloat16 convolutions and matrix products);
- a CUDA GPU that supports bfloat16 (Ampere and newer).

On other CPUs bfloat16 is emulated and slower than float32, so ``auto`` keeps float32.

In both precisions the network's 4-D parameters are stored channels-last and its
activations stay channels-last from the first convolution to the output: every
convolution then runs on oneDNN's (or cuDNN's) fast NHWC kernels without layout
conversions. ``fp32`` is exact to rounding (parity with the authors' checkpoint within
1e-4); ``bf16`` keeps the recurrent states and activations in bfloat16 and forms the
small attention matrices in float32.
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


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``"auto"`` -> ``"bf16"`` where ``device`` runs bfloat16 natively, else ``"fp32"``.

    ``"fp32"`` and ``"bf16"`` are returned as given; anything else is an error.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    if str(device).split(":")[0] == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def describe_auto(device: str = "cpu") -> str:
    """One line saying what ``auto`` picks on ``device`` and why."""
    chosen = resolve_precision("auto", device)
    if str(device) == "cpu":
        why = "it has native bfloat16" if chosen == "bf16" else "no native bfloat16"
        return f"auto picks {chosen} on this CPU ({why})"
    return f"auto picks {chosen} on {device}"


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
    natively (see :func:`resolve_precision`), else ``"32"``; Lightning's own values
    (``"32"``, ``"bf16-mixed"``, ``"16-mixed"``, ...) pass through.
    """
    if value != "auto":
        return value
    device = "cpu"
    if accelerator in ("auto", "gpu", "cuda"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16-mixed" if resolve_precision("auto", device) == "bf16" else "32"
