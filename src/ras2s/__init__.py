"""ras2s: RAS2S hyperspectral denoising (ECCV 2024) as software.

Public API::

    ras2s.denoise(cube, weights="default", layout="BHW", tile=None, ...)  # any size
    ras2s.load_model(weights="default", device="cpu")  # nn.Module, (N, bands, H, W)
    ras2s.add_noise(clean, "mixture", rng=0)           # the paper's noise cases
    ras2s.metrics.mpsnr / mssim / sam / ergas
    ras2s.read_cube / ras2s.write_cube                 # .mat .npy .npz .h5 .tif ENVI PNG
"""

from . import metrics, noise
from .errors import InputError, LayoutError, OutputError, Ras2sError, WeightsError
from .inference import denoise
from .io import read_cube, write_cube
from .noise import add_noise
from .weights import load_model

__version__ = "0.1.0"

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
