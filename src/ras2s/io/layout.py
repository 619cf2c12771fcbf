"""Where a stored cube keeps its spectral axis, and the transposes to and from bands first.

The rule itself is written out in :mod:`ras2s.io`; rules 3 and 4 (the shape decides)
are :func:`detect_layout`. These are the only transposes in ras2s.
"""

from __future__ import annotations

import numpy as np

from ras2s.errors import InputError, LayoutError

LAYOUTS = ("HWB", "BHW")

#: stored layout -> axes of the stored array that give (bands, rows, cols)
TO_BHW = {"BHW": (0, 1, 2), "HWB": (2, 0, 1), "HBW": (1, 0, 2)}
#: stored layout -> axes of a bands-first array that give the stored order
FROM_BHW = {"BHW": (0, 1, 2), "HWB": (1, 2, 0), "HBW": (1, 0, 2)}


def to_bhw(a: np.ndarray, layout: str) -> np.ndarray:
    """A stored array as bands first (a view)."""
    return a.transpose(TO_BHW[layout])


def from_bhw(a: np.ndarray, layout: str) -> np.ndarray:
    """A bands-first array in the stored order ``layout`` (a view)."""
    return a.transpose(FROM_BHW[layout])


def stored_key(key: tuple, layout: str) -> tuple:
    """A bands-first index ``(bands, rows, cols)`` in the stored axis order."""
    return tuple(key[i] for i in FROM_BHW[layout])


def stored_shape(shape: tuple, layout: str) -> tuple:
    """The stored shape of a ``(bands, H, W)`` cube kept in ``layout``."""
    return tuple(int(shape[i]) for i in FROM_BHW[layout])


def parse_layout(layout: str | None, source: object) -> str | None:
    """``layout`` upper-cased, None for None; InputError unless HWB or BHW."""
    if layout is None:
        return None
    up = str(layout).upper()
    if up not in LAYOUTS:
        raise InputError(
            f"{source}: layout must be HWB (bands last) or BHW (bands first), got {layout!r}"
        )
    return up


def detect_layout(
    shape: tuple[int, int, int], *, source: str = "array", convention: str | None = None
) -> str:
    """Decide how a 3-D array is stored: ``"HWB"`` (bands last) or ``"BHW"`` (bands first).

    Implements rules 3 and 4 of the layout rule of :mod:`ras2s.io` (rules 1-2 live in
    :func:`ras2s.io.open_cube`).

    Parameters
    ----------
    shape : tuple of 3 int
        The stored array's shape (for a .mat file, in MATLAB order).
    source : str
        Name used in error messages (usually the file path).
    convention : {"HWB", "BHW"} or None
        The format's convention (``"HWB"`` for MATLAB). It holds unless the shape
        plainly says the opposite, which is an error.

    Returns
    -------
    str
        ``"HWB"`` or ``"BHW"``.

    Raises
    ------
    LayoutError
        When the layout cannot be decided without a guess.

    Examples
    --------
    >>> detect_layout((512, 512, 31)), detect_layout((31, 512, 512))
    ('HWB', 'BHW')
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise LayoutError(f"{source}: shape {shape} is not 3-D; a cube must be 3-D")
    a, b, c = shape
    natural = "HWB" if a == b != c else "BHW" if b == c != a else None
    if convention is not None:
        convention = parse_layout(convention, source)
        if natural is None or natural == convention:
            return convention
        readings = {
            "HWB": f"HWB = {c} bands of {a} x {b}",
            "BHW": f"BHW = {a} bands of {b} x {c}",
        }
        raise LayoutError(
            f"{source}: shape {shape} contradicts the {convention} convention of its format "
            f"(it reads as {readings[convention]}, but looks like {readings[natural]}); "
            "pass --layout HWB or --layout BHW"
        )
    if natural is None:
        raise LayoutError(
            f"{source}: cannot tell the spectral axis of shape {shape} (bands must be the "
            "first or last axis, and the other two are not equal-sized rows x cols); "
            "pass --layout HWB (bands last) or --layout BHW (bands first)"
        )
    return natural
