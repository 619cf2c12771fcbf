"""Whole-cube operations on ``(bands, H, W)`` arrays: normalise, denormalise, centre crop.

Every layer that maps a cube to the paper's [0, 1] domain or cuts its centre uses these
(``ras2s noise``, ``ras2s evaluate``, ``ras2s report``, ``ras2s prepare`` and
:func:`ras2s.denoise`), so the convention is written once:

- **normalise**: ``(x - lo) / (hi - lo)`` in float64, stored as float32, with ``lo`` and
  ``hi`` the cube's minimum and maximum over all its values (the paper's convention), or
  a given pair (to map several cubes with one affine map). NaN/Inf and a constant cube
  are errors.
- **denormalise**: ``x * (hi - lo) + lo`` in float64 (one band at a time) back to a
  dtype; integers are rounded and clipped to the dtype's range, floats clipped to the
  dtype's finite range (a finite input never comes back as Inf).
- **check_range**: a range whose width overflows float64 (values near the float
  limits) or whose inverse does (a subnormal width) is refused, never normalised into
  zeros or NaN.
- **centre crop**: ``top = (H - h) // 2``, ``left = (W - w) // 2``; an axis smaller than
  the crop is kept whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError

__all__ = ["centre_box", "centre_crop", "check_range", "denormalise", "normalise"]


def check_range(lo: float, hi: float, *, source: str = "the cube") -> float:
    """``1 / (hi - lo)``, or :class:`InputError` when float64 cannot map ``[lo, hi]`` to [0, 1].

    Examples
    --------
    >>> check_range(2.0, 6.0)
    0.25
    """
    with np.errstate(over="ignore", divide="ignore"):
        width = np.float64(hi) - np.float64(lo)
        scale = np.float64(1.0) / width if width != 0 else np.float64(np.inf)
    if not np.isfinite(width):
        raise InputError(
            f"{source}: its values span [{lo:.6g}, {hi:.6g}], a range too wide for float64; "
            "rescale the data (the values are near the float limits)"
        )
    if width > 0 and not np.isfinite(scale):
        raise InputError(
            f"{source}: its values span [{lo:.6g}, {hi:.6g}], a range too narrow to "
            f"normalise in float64 (width {width:.3g}); rescale the data"
        )
    return float(scale)


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
    scale = check_range(lo, hi, source=source)
    return ((data - lo) * scale).astype(np.float32), lo, hi


def denormalise(
    cube: np.ndarray, lo: float, hi: float, dtype: np.dtype | type = np.float32, *, copy=True
) -> np.ndarray:
    """Map a normalised cube back to ``[lo, hi]`` and cast it to ``dtype``.

    The arithmetic is float64, one slice of the first axis at a time (so that a large
    offset with a small range, ``1000 + 0.001 x``, keeps every level in a float64
    output). Integer dtypes are rounded and clipped to their range; float dtypes are
    clipped to their finite range. ``copy=False`` reuses a float32 ``cube`` as the
    output when ``dtype`` is float32 (it is then modified).

    Examples
    --------
    >>> denormalise(np.array([0.0, 0.5, 1.0]), 2.0, 6.0).tolist()
    [2.0, 4.0, 6.0]
    >>> denormalise(np.array([0.0, 1.2]), 0, 255, np.uint8).tolist()
    [0, 255]
    """
    cube = np.asarray(cube)
    dtype = np.dtype(dtype)
    reuse = not copy and dtype == np.float32 and cube.dtype == np.float32
    out = cube if reuse else np.empty(cube.shape, dtype)
    if np.issubdtype(dtype, np.integer):
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    else:
        low, high = np.finfo(dtype).min, np.finfo(dtype).max
    width = np.float64(hi) - np.float64(lo)
    for i in range(cube.shape[0]) if cube.ndim > 1 else [Ellipsis]:
        part = cube[i].astype(np.float64)
        part *= width
        part += np.float64(lo)
        if np.issubdtype(dtype, np.integer):
            np.rint(part, out=part)
        np.clip(part, low, high, out=part)
        out[i] = part
    return out


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
