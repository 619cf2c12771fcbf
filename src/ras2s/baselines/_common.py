"""Checks, the noise-level estimator and lazy imports shared by the baselines."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ras2s.errors import InputError, Ras2sError

__all__ = ["MissingDependencyError", "estimate_sigma", "require", "resolve_sigma"]

EXTRA_HINT = "pip install 'ras2s[baselines]'"

# Daubechies-2 decomposition high-pass filter (PyWavelets ``pywt.Wavelet("db2").dec_hi``).
_DB2_HI = np.array(
    [-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037]
)
_MAD_TO_SIGMA = 0.6744897501960817  # Phi^-1(3/4): MAD of N(0, 1)


class MissingDependencyError(Ras2sError, ImportError):
    """A baseline needs an optional package that is not installed."""


def require(module: str, method: str) -> ModuleType:
    """Import ``module`` for the baseline ``method`` or raise :class:`MissingDependencyError`.

    Parameters
    ----------
    module : str
        Importable name (``"bm4d"``, ``"skimage.restoration"``, ``"pywt"``).
    method : str
        The baseline that needs it, for the message.

    Returns
    -------
    module
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"baseline {method!r} needs the package {top!r}, which cannot be imported "
            f"({err}); install the extra: {EXTRA_HINT}"
        ) from err


def check_noisy(noisy: Any, method: str) -> np.ndarray:
    """Return ``noisy`` as a float32 ``(bands, H, W)`` array; raise InputError otherwise.

    The input is never modified (a new array is returned when a cast is needed).
    """
    arr = np.asarray(noisy)
    if arr.ndim != 3:
        raise InputError(
            f"baseline {method!r} expects a cube of shape (bands, H, W), got an array of "
            f"shape {arr.shape}"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(
            f"baseline {method!r} expects a real float cube, got dtype {arr.dtype} "
            f"(shape {arr.shape})"
        )
    if min(arr.shape) < 1:
        raise InputError(f"baseline {method!r}: cube of shape {arr.shape} is empty")
    out = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(out)):
        raise InputError(
            f"baseline {method!r}: cube of shape {arr.shape} contains NaN or Inf; fill them first"
        )
    return out


def _hh_db2(band: np.ndarray) -> np.ndarray:
    """Finest diagonal (HH) db2 detail coefficients of a 2-D band, no boundary terms."""
    g = _DB2_HI
    n = g.size
    h, w = band.shape
    rows = sum(g[k] * band[:, k : w - n + 1 + k] for k in range(n))[:, ::2]
    return sum(g[k] * rows[k : h - n + 1 + k, :] for k in range(n))[::2, :]


def estimate_sigma(noisy: Any) -> np.ndarray:
    """Per-band Gaussian noise level by Donoho's wavelet MAD estimator.

    For every band, ``sigma = median(|HH|) / 0.6745`` where ``HH`` are the finest-scale
    diagonal Daubechies-2 wavelet detail coefficients (Donoho and Johnstone 1994,
    "Ideal spatial adaptation by wavelet shrinkage", Biometrika 81(3)). This is what
    scikit-image's :func:`skimage.restoration.estimate_sigma` computes per channel,
    except that only coefficients away from the border are used (no boundary
    extension), so it needs no optional package.

    Parameters
    ----------
    noisy : array_like, shape (bands, H, W)
        Noisy cube in data units (e.g. normalised to [0, 1]); bands at least 4 x 4.

    Returns
    -------
    ndarray of float64, shape (bands,)
        Estimated noise standard deviation of every band, in data units.

    Raises
    ------
    InputError
        For a cube that is not 3-D, holds NaN/Inf, or has bands smaller than 4 x 4.

    Notes
    -----
    The estimate is for additive white Gaussian noise. Image texture at the finest
    scale biases it upwards (slightly for natural images at sigma >= 10/255); stripes,
    dead lines and impulse noise are not Gaussian and make it unreliable.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noisy = 0.5 + 0.1 * rng.standard_normal((2, 128, 128))
    >>> estimate_sigma(noisy).round(2)
    array([0.1, 0.1])
    """
    cube = check_noisy(noisy, "estimate_sigma").astype(np.float64)
    if min(cube.shape[1:]) < _DB2_HI.size:
        raise InputError(
            f"estimate_sigma needs bands of at least {_DB2_HI.size} x {_DB2_HI.size} "
            f"pixels, got a cube of shape {cube.shape} (bands, H, W)"
        )
    return np.array([np.median(np.abs(_hh_db2(b))) / _MAD_TO_SIGMA for b in cube])


def resolve_sigma(
    sigma: float | Sequence[float] | np.ndarray | None, cube: np.ndarray, method: str
) -> np.ndarray:
    """Per-band sigma (float64, shape (bands,)) from a scalar, a sequence or None.

    ``None`` estimates it with :func:`estimate_sigma`.
    """
    bands = cube.shape[0]
    if sigma is None:
        per_band = estimate_sigma(cube)
    else:
        per_band = np.asarray(sigma, dtype=np.float64).reshape(-1)
        if per_band.size == 1:
            per_band = np.full(bands, float(per_band[0]))
        if per_band.size != bands:
            raise InputError(
                f"baseline {method!r}: sigma must be one number or one per band "
                f"({bands}), got {per_band.size} values"
            )
    if not np.all(np.isfinite(per_band)) or np.any(per_band < 0):
        raise InputError(f"baseline {method!r}: sigma must be finite and >= 0, got {sigma!r}")
    # A noiseless band (sigma 0) would divide by zero in whitening; floor it.
    return np.maximum(per_band, 1e-6)


def spread(per_band: np.ndarray) -> float:
    """Ratio max / min of the per-band sigmas (1 for i.i.d. noise)."""
    return float(per_band.max() / per_band.min()) if per_band.min() > 0 else math.inf
