"""Keep denoised valid pixels off the nodata value the output file declares.

A valid pixel whose denoised value rounds to the nodata value (a uint16 pixel near 0
with ``nodata=0``) would silently become nodata for every reader of the output.
:func:`keep_off_nodata` moves such values to the nearest other value the dtype can
hold; the pixels that were nodata in the input are left as they are.
"""

from __future__ import annotations

import math

import numpy as np


def keep_off_nodata(
    result: np.ndarray,
    valid: np.ndarray | None,
    nodata: float | None,
    *,
    means: np.ndarray | None = None,
) -> np.ndarray:
    """Move valid values equal to ``nodata`` to the nearest other representable value.

    Integers move by one: ``nodata`` at the dtype's minimum (uint16 0) goes up (to 1),
    at its maximum (uint16 65535) down (to 65534); ``nodata`` inside the range goes to
    the neighbour on the side of its band's other valid values (their mean), up on a
    tie. Floats move by one ulp (:func:`numpy.nextafter`) by the same rule. A NaN
    ``nodata``, or one the dtype cannot hold, needs nothing.

    Parameters
    ----------
    result : numpy.ndarray
        ``(bands, H, W)`` denoised cube, any real dtype. Not modified.
    valid : numpy.ndarray of bool or None
        ``(bands, H, W)`` (or broadcastable): True where the pixel was valid in the
        input. None: every pixel was valid.
    nodata : float or None
        The nodata value the output declares; None: nothing to do.
    means : numpy.ndarray, optional
        ``(bands,)`` float64: each band's mean of valid values, which decides the side
        an in-range ``nodata`` moves to. Given when ``result`` is one strip of a larger
        cube (:mod:`ras2s.pipeline` passes the input's band means, so that every strip
        moves a band's values to the same side); default: the mean of ``result``'s own
        other valid values in that band. A NaN entry falls back to the default.

    Returns
    -------
    numpy.ndarray
        ``result``'s shape and dtype; ``result`` itself when nothing had to move, else a
        copy in which no valid value equals ``nodata``.

    Examples
    --------
    >>> out = np.array([[[0, 7], [0, 65535]]], np.uint16)
    >>> keep_off_nodata(out, out != 65535, 0)
    array([[[    1,     7],
            [    1, 65535]]], dtype=uint16)
    """
    result = np.asarray(result)
    if result.ndim != 3:
        raise ValueError(f"expected a (bands, H, W) cube, got shape {result.shape}")
    if nodata is None or math.isnan(nodata):
        return result
    if valid is not None:
        valid = np.broadcast_to(np.asarray(valid, bool), result.shape)
    kind = result.dtype.kind
    info = np.iinfo(result.dtype) if kind in "iu" else np.finfo(result.dtype)
    if not info.min <= nodata <= info.max or (kind in "iu" and nodata != int(nodata)):
        return result  # no value of this dtype equals it
    hit = result == nodata
    if valid is not None:
        hit &= valid
    if not hit.any():
        return result
    target = result.dtype.type(nodata)
    if kind in "iu":
        down = None if nodata == info.min else target - 1
        up = None if nodata == info.max else target + 1
    else:
        down = np.nextafter(target, result.dtype.type(-np.inf))
        up = np.nextafter(target, result.dtype.type(np.inf))
        down = None if np.isinf(down) else down
        up = None if np.isinf(up) else up
    out = result.copy()
    for b in np.flatnonzero(hit.reshape(hit.shape[0], -1).any(axis=1)):
        others = result[b] != nodata
        if valid is not None:
            others &= valid[b]
        given = np.nan if means is None else float(means[b])
        if math.isnan(given) and others.any():
            given = float(result[b][others].mean(dtype=np.float64))
        side_up = up is not None and (down is None or math.isnan(given) or given >= nodata)
        out[b][hit[b]] = up if side_up else down
    return out
