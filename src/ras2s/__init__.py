"""ras2s: RAS2S hyperspectral denoising (ECCV 2024) as software.

Public API::

    ras2s.denoise(cube, weights="default", layout="BHW", tile=None, ...)  # any size
    ras2s.load_model(weights="default", device="cpu")  # nn.Module, (N, bands, H, W)
    ras2s.add_noise(clean, "mixture", rng=0)           # the paper's noise cases
    ras2s.metrics.mpsnr / mssim / sam / ergas
    ras2s.read_cube / ras2s.write_cube                 # .mat .npy .npz .h5 .tif ENVI PNG

``denoise`` and ``load_model`` are imported on first use (module ``__getattr__``), so
``import ras2s`` and ``ras2s --help`` do not import torch (about 2 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import metrics, noise
from .errors import InputError, LayoutError, OutputError, Ras2sError, WeightsError
from .io import read_cube, write_cube
from .noise import add_noise

if TYPE_CHECKING:
    from .inference import denoise
    from .weights import load_model

__version__ = "0.1.0"

#: Public names whose modules import torch: loaded when first asked for.
_LAZY = {"denoise": ".inference", "load_model": ".weights"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "InputError",
    "LayoutError",
    "OutputError",
    "Ras2sError",
    "WeightsError",
    "add_noise",
    "denoise",
    "load_model",
    "metrics",
    "noise",
    "read_cube",
    "write_cube",
]
