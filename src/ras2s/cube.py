"""Whole-cube operations on ``(bands, H, W)`` arrays: normalise, denormalise, centre crop.

Every layer that maps a cube to the paper's [0, 1] domain or cuts its centre uses these
(``ras2s noise``, ``ras2s evaluate``, ``ras2s report``, ``ras2s prepare`` and
:func:`ras2s.denoise`), so the convention is written once:

- **normalise**: ``(x - lo) / (hi - lo)`` in float64, stored as float32, with ``lo`` and
  ``hi`` the cube's minimum and maximum over all its values (the paper's convention), or
  a given pair (to map several cubes with one affine map). NaN/Inf and a constant cube
  are errors.
- **denormalise**: ``x * (hi - lo) + lo`` back to a dtype; integers are rounded and
  clipped to the dtype's range.
- **centre crop**: ``top = (H - h) // 2``, ``left = (W - w) // 2``; an axis smaller than
  the crop is kept whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError

__all__ = ["centre_box", "centre_crop", "denormalise", "normalise"]


def normalise(
    cube: np.ndarray,
    lo: float | None = None,
    hi: float | None = None,
    *,
    source: str = "the cube",
) -> tuple[np.ndarray, float, float]:
    """Min-max normalise ``cube`` to [0, 1]: ``(normalised float32, lo, hi)``.

    Parameters
    ----------
    cube : array_like
        Any shape, any real dtype. Not modified.
    lo, hi : float, optional
        The values mapped to 0 and 1; default the cube's own minimum and maximum.
    source : str
        What to call the cube in error messages (a file name).

    Raises
    ------
    InputError
        When the cube holds NaN or Inf, or when ``hi == lo`` (a constant cube).

    Examples
    --------
    >>> out, lo, hi = normalise(np.array([[[2.0, 4.0, 6.0]]]))
    >>> out.tolist(), lo, hi
    ([[[0.0, 0.5, 1.0]]], 2.0, 6.0)
    """
    data = np.asarray(cube, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{source}: the cube {data.shape} holds NaN or Inf values")
    lo = float(data.min()) if lo is None else float(lo)
    hi = float(data.max()) if hi is None else float(hi)
    if hi == lo:
        raise InputError(f"{source}: the cube {data.shape} is constant ({lo}); cannot normalise")
    return ((data - lo) / (hi - lo)).astype(np.float32), lo, hi


def denormalise(
    cube: np.ndarray, lo: float, hi: float, dtype: np.dtype | type = np.float32, *, copy=True
) -> np.ndarray:
    """Map a normalised cube back to ``[lo, hi]`` and cast it to ``dtype``.

    The arithmetic is float32. Integer dtypes are rounded and clipped to their range.
    ``copy=False`` reuses a float32 ``cube`` as the work buffer (it is then modified).

    Examples
    --------
    >>> denormalise(np.array([0.0, 0.5, 1.0]), 2.0, 6.0).tolist()
    [2.0, 4.0, 6.0]
    >>> denormalise(np.array([0.0, 1.2]), 0, 255, np.uint8).tolist()
    [0, 255]
    """
    out = np.asarray(cube).astype(np.float32, copy=copy)
    out *= np.float32(hi - lo)
    out += np.float32(lo)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(out, out=out)
        np.clip(out, info.min, info.max, out=out)
        return out.astype(dtype)
    return out.astype(dtype, copy=False)


def centre_box(shape: Sequence[int], size: int | Sequence[int] | None) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the centre crop of ``size`` in a ``(bands, H, W)`` shape.

    ``size`` is one side, ``(h, w)`` or ``None`` (the whole image). An axis smaller than
    the crop is kept whole.

    Examples
    --------
    >>> centre_box((3, 10, 8), 4), centre_box((3, 10, 8), (20, 2)), centre_box((3, 5, 5), None)
    ((3, 2, 4, 4), (0, 3, 10, 2), (0, 0, 5, 5))
    """
    height, width = int(shape[-2]), int(shape[-1])
    if size is None:
        return 0, 0, height, width
    h, w = (size, size) if isinstance(size, int | np.integer) else size
    h, w = min(int(h), height), min(int(w), width)
    return (height - h) // 2, (width - w) // 2, h, w


def centre_crop(cube: np.ndarray, size: int | Sequence[int] | None) -> np.ndarray:
    """The centre crop of a ``(bands, H, W)`` cube (a view); see :func:`centre_box`."""
    if size is None:
        return cube
    top, left, h, w = centre_box(cube.shape, size)
    return cube[..., top : top + h, left : left + w]
