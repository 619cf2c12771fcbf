"""Memory-bounded overlapped tiling with smooth blending, for any tile-wise model.

A cube ``(bands, H, W)`` is cut into overlapping windows (:func:`tile_grid`), each window
is passed through a function ``fn`` (for example the network), and the results are
blended back with weights that taper smoothly over the overlaps (:func:`blend_window`).
:func:`run_tiled` does all of this while holding only one tile at a time, so the
memory it needs besides the output is ``O(bands * tile_h * tile_w) + O(H * W)``.

Geometry
--------
Along each axis tiles start every ``tile - overlap`` pixels; the last tile is shifted
back so that it ends exactly at the border. Every tile is therefore full size and
inside the image (no padding), every pixel is covered, and the last tile may overlap
its neighbour by more than ``overlap``. An image smaller than the tile is one tile: the
whole image.

Blending
--------
The weight of a tile is a separable product of 1-D raised-cosine (Hann) ramps. Along an
axis, a side that touches another tile ramps over exactly the pixels it shares with that
neighbour, as ``sin^2(pi/2 * (i + 0.5) / n)`` for ``i = 0 .. n - 1``; a side on the image
border keeps weight 1 up to the border. Two neighbours that share ``n`` pixels thus get
``sin^2 + cos^2 = 1`` there (a partition of unity), the hand-over from one tile to the
next is smooth, and a tile's outermost pixel, the one a convolutional model gets most
wrong, has a weight of only about ``(pi / 4n)^2``. Weights are never zero.

The blended value of a pixel is the weighted mean of the tiles covering it. It is kept
up to date in ``out`` itself as a running weighted mean,
``out += w / (sum of w so far) * (tile - out)``, with the sum of weights in one
``float32 (H, W)`` array. The result is normalised at every step, so no final pass and no
second full-size array are needed. Unlike ``sum(w * tile) / sum(w)``, which rounds,
this update is exact whenever the tiles agree: a model that acts pixel-wise (identity,
``x + 1``, any per-pixel map) returns exactly its whole-image result, and a single tile
returns ``fn(whole image)`` bit for bit.

Choosing sizes
--------------
Any tile of at least 1 pixel works (the network accepts any size) and the overlap must
be smaller than the tile. For RAS2S, tiles of at least 64 pixels with an overlap of at
least 16 are recommended: smaller tiles spend most of their pixels in overlaps and near
borders, and the overlap should exceed the depth of the border artefacts of the model.
:func:`tile_for_budget` picks the largest tile that fits a memory budget.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from ras2s.errors import InputError

__all__ = [
    "Tile",
    "balanced_tile",
    "band_window_starts",
    "blend_window",
    "run_band_windows",
    "run_tiled",
    "tile_for_budget",
    "tile_grid",
]


@dataclass(frozen=True)
class Tile:
    """The input window ``[y0:y1, x0:x1]`` of one tile (rows, then columns)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the window."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def window(self) -> tuple[slice, slice]:
        """The window as ``(rows, columns)`` slices."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))


# ---------------------------------------------------------------------------------------
# checks


def _integer(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int ``>= minimum``, else :class:`InputError` naming it."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {number}")
    return number


def _tile_pair(tile: int | Sequence[int]) -> tuple[int, int]:
    """``tile`` as ``(tile_h, tile_w)``, each ``>= 1``."""
    if isinstance(tile, Sequence):
        if len(tile) != 2:
            raise InputError(f"tile must be an int or (tile_h, tile_w), got {tile!r}")
        return _integer("tile height", tile[0], 1), _integer("tile width", tile[1], 1)
    side = _integer("tile", tile, 1)
    return side, side


def _plan(
    height: int, width: int, tile: int | Sequence[int], overlap: int
) -> tuple[tuple[int, list[int]], tuple[int, list[int]]]:
    """Validated geometry: ``(tile_h, starts_y), (tile_w, starts_x)`` after clipping."""
    height = _integer("height", height, 1)
    width = _integer("width", width, 1)
    tile_h, tile_w = _tile_pair(tile)
    overlap = _integer("overlap", overlap, 0)
    if overlap >= min(tile_h, tile_w):
        raise InputError(
            f"overlap must be smaller than the tile, got overlap {overlap} for tile "
            f"{tile_h} x {tile_w}; use a smaller overlap or a larger tile"
        )
    return _axis(height, tile_h, overlap), _axis(width, tile_w, overlap)


def _axis(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Tile size and tile starts along one axis of ``length`` pixels."""
    tile = min(tile, length)
    step = tile - min(overlap, tile - 1)  # overlap clipped when the image is small
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # the last tile ends exactly at the border
    return tile, starts


def balanced_tile(height: int, width: int, tile: int, overlap: int) -> tuple[int, int]:
    """The smallest ``(tile_h, tile_w)``, each ``<= tile``, covering the image with as few tiles.

    With the largest tile ``tile`` that fits a memory budget, :func:`tile_grid` shifts the
    last tile of each axis back to the border, so a 512-pixel side with 448-pixel tiles is
    covered twice over (starts 0 and 64) and the network computes 3x the image area.
    Keeping the number of tiles per axis, ``n = ceil((L - overlap) / (tile - overlap))``,
    and shrinking each to ``ceil((L + (n - 1) * overlap) / n)`` leaves only the overlap
    strips as extra work (here 2 x 272 pixels per axis, 1.13x the area) and uses less
    memory. Sides that fit in one tile are returned whole.

    >>> balanced_tile(512, 512, 448, 32)
    (272, 272)
    >>> balanced_tile(2048, 100, 320, 32)
    (320, 100)
    """

    def side(length: int) -> int:
        if length <= tile:
            return length
        count = math.ceil((length - overlap) / (tile - overlap))
        return min(tile, math.ceil((length + (count - 1) * overlap) / count))

    if overlap >= tile:
        raise InputError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    return side(height), side(width)


def _shared(starts: list[int], tile: int, k: int) -> tuple[int, int]:
    """Pixels tile ``k`` shares with its previous and its next neighbour on one axis."""
    before = starts[k - 1] + tile - starts[k] if k > 0 else 0
    after = starts[k] + tile - starts[k + 1] if k + 1 < len(starts) else 0
    return before, after


# ---------------------------------------------------------------------------------------
# geometry and weights


def tile_grid(height: int, width: int, tile: int | tuple[int, int], overlap: int) -> list[Tile]:
    """Overlapping tiles that cover an image exactly, in raster order.

    Parameters
    ----------
    height, width : int
        Image size in pixels, each ``>= 1``.
    tile : int or (int, int)
        Tile side, or ``(tile_h, tile_w)``; any size ``>= 1``. Clipped to the image.
    overlap : int
        Pixels shared by neighbouring tiles, ``0 <= overlap < tile``. Clipped when the
        image is smaller than the tile (then there is one tile along that axis).

    Returns
    -------
    list of Tile
        Windows of size ``min(tile_h, height) x min(tile_w, width)``, rows outer,
        columns inner. Tiles start every ``tile - overlap`` pixels; the last one along
        each axis is shifted back to end at the border, so none is smaller than the
        others or leaves the image, and it may overlap its neighbour by more than
        ``overlap``.

    Raises
    ------
    InputError
        If a size is not a positive integer, or ``overlap`` is negative or not smaller
        than the tile.

    Examples
    --------
    >>> [(t.y0, t.y1, t.x0, t.x1) for t in tile_grid(10, 4, 6, 2)]
    [(0, 6, 0, 4), (4, 10, 0, 4)]
    >>> [(t.x0, t.x1) for t in tile_grid(1, 11, 4, 1)]
    [(0, 4), (3, 7), (6, 10), (7, 11)]
    """
    (tile_h, ys), (tile_w, xs) = _plan(height, width, tile, overlap)
    return [Tile(y, y + tile_h, x, x + tile_w) for y in ys for x in xs]


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1-D float64 weights: raised-cosine rise over ``before``, fall over ``after``."""
    weights = np.ones(length)
    centres = np.arange(length) + 0.5
    if before > 0:
        n = min(before, length)
        weights[:n] *= np.sin(0.5 * np.pi * centres[:n] / n) ** 2
    if after > 0:
        n = min(after, length)
        weights[length - n :] *= np.sin(0.5 * np.pi * centres[:n][::-1] / n) ** 2
    return weights


def blend_window(
    tile_h: int,
    tile_w: int,
    overlap: int | tuple[int, int, int, int],
    *,
    at_top: bool = False,
    at_bottom: bool = False,
    at_left: bool = False,
    at_right: bool = False,
) -> np.ndarray:
    """Blending weights of one tile: raised-cosine ramps on its interior edges.

    Along each side that is not on the image border the weight rises as
    ``sin^2(pi/2 * (i + 0.5) / n)``, ``i = 0 .. n - 1``, over the ``n`` overlapping
    pixels; it is 1 elsewhere and up to a border side. The window is the outer product
    of the row and column ramps. Two neighbours sharing ``n`` pixels get weights that
    sum to 1 there (``sin^2 + cos^2``). Every weight is strictly positive.

    Parameters
    ----------
    tile_h, tile_w : int
        Tile size, each ``>= 1``.
    overlap : int or (int, int, int, int)
        Ramp length in pixels, for all sides or per side as ``(top, bottom, left,
        right)``; each ``>= 0``, clipped to the tile. A side with 0 has no ramp.
    at_top, at_bottom, at_left, at_right : bool
        Whether that side touches the image border (then it has no ramp).

    Returns
    -------
    numpy.ndarray
        ``float32 (tile_h, tile_w)`` weights in ``(0, 1]``.

    Examples
    --------
    >>> blend_window(1, 4, 2, at_top=True, at_bottom=True, at_left=True).round(3)
    array([[1.   , 1.   , 0.854, 0.146]], dtype=float32)
    """
    tile_h = _integer("tile_h", tile_h, 1)
    tile_w = _integer("tile_w", tile_w, 1)
    if isinstance(overlap, Sequence):
        if len(overlap) != 4:
            raise InputError(
                f"overlap must be an int or (top, bottom, left, right), got {overlap!r}"
            )
        top, bottom, left, right = (_integer("overlap", side, 0) for side in overlap)
    else:
        top = bottom = left = right = _integer("overlap", overlap, 0)
    rows = _ramp(tile_h, 0 if at_top else top, 0 if at_bottom else bottom)
    cols = _ramp(tile_w, 0 if at_left else left, 0 if at_right else right)
    window = np.outer(rows, cols).astype(np.float32)
    # Far beyond realistic sizes a product of ramps could underflow float32: keep > 0.
    return np.maximum(window, np.finfo(np.float32).tiny, out=window)


# ---------------------------------------------------------------------------------------
# running a function over tiles


def _read(
    cube: Any, tile: Tile, transform: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    """A private float32 C-contiguous copy of one input window, transformed."""
    raw = cube[(slice(None), *tile.window)]
    if transform is None:
        return np.array(raw, dtype=np.float32, order="C")  # always a copy
    # A copy, so a transform (or fn) working in place never reaches the cube.
    return np.ascontiguousarray(transform(np.array(raw)), dtype=np.float32)


def _progress_kwargs(progress: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Keyword arguments for tqdm, or None for no progress bar."""
    if isinstance(progress, Mapping):
        return {"desc": "tiles", "unit": "tile", **progress}
    return {"desc": "tiles", "unit": "tile"} if progress else None


def run_tiled(
    cube: Any,
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    tile: int | tuple[int, int],
    overlap: int,
    out: np.ndarray | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool | Mapping[str, Any] = False,
    on_tile: Callable[[int, int], None] | None = None,
    mapper: Callable[[Callable, Iterator[np.ndarray]], Iterator[np.ndarray]] | None = None,
) -> np.ndarray:
    """Apply ``fn`` to overlapping tiles of a cube and blend the results.

    Tiles come from :func:`tile_grid`; each result is weighted by :func:`blend_window`
    (ramps over the pixels actually shared with each neighbour) and folded into ``out``
    as a running weighted mean, so ``out`` holds the normalised blend at every step.

    Parameters
    ----------
    cube : array_like
        ``(bands, H, W)`` of any real dtype: a numpy array, a ``numpy.memmap`` or an
        h5py-like dataset; only one window is read at a time. Never modified.
    fn : callable
        Maps a ``float32 (bands, h, w)`` tile to a ``(bands, h, w)`` result (cast to
        float32), e.g. the network. It gets a private copy and may work in place.
        Exceptions it raises propagate.
    tile : int or (int, int)
        Tile side, or ``(tile_h, tile_w)``; any size ``>= 1``, clipped to the image.
    overlap : int
        Pixels shared by neighbouring tiles, ``0 <= overlap < tile``.
    out : numpy.ndarray or array-like, optional
        ``float32 (bands, H, W)`` array (may be a memmap) to write the result into;
        its previous content is ignored. Allocated when omitted. Must not share memory
        with ``cube``. Anything else with ``shape``, ``dtype`` float32 and window
        ``__getitem__``/``__setitem__`` (a :class:`ras2s.pipeline.Scratch` file) works
        too: each tile's window is read, blended and written back.
    transform : callable, optional
        Applied to each input window before ``fn`` (e.g. normalisation on the fly, so
        the full cube is never copied). It gets a private copy of the window in the
        cube's own dtype, and its result is cast to float32.
    progress : bool or mapping
        Show a tqdm progress bar over tiles when true; a mapping (even empty) turns it
        on and is passed to tqdm as keyword arguments (``desc``, ``leave``,
        ``disable``, ...).
    on_tile : callable, optional
        Called as ``on_tile(done, total)`` (tiles) before the first tile and after each
        one, e.g. for a progress bar in a GUI; an exception it raises stops the work and
        propagates (a way to cancel).
    mapper : callable, optional
        ``mapper(fn, blocks)`` returns ``fn(block)`` for each block of the iterator
        ``blocks``, in order (default: the built-in ``map``). A parallel mapper
        (:class:`ras2s.parallel.TilePool`) runs several tiles at once; it should read
        ``blocks`` only a few ahead of what it returns, since each block is a tile.

    Returns
    -------
    numpy.ndarray
        ``out``: ``float32 (bands, H, W)``.

    Raises
    ------
    InputError
        If ``cube`` is not 3-D or empty, ``tile``/``overlap`` are invalid, ``out`` has
        the wrong shape or dtype or overlaps ``cube``, or ``fn`` returns a wrong shape.

    Notes
    -----
    Memory besides ``out`` (and ``fn``'s own workspace): the weight sum, ``4 * H * W``
    bytes, plus a few tile-sized buffers, about ``bands * tile_h * tile_w *
    (itemsize + 12)`` bytes (input window, float32 tile, ``fn``'s result, update) and
    ``16 * tile_h * tile_w`` bytes of weights: ``O(bands * tile_h * tile_w) + O(H * W)``.

    Where tiles agree (any pixel-wise ``fn``) the result is exact, and with a single
    tile (image no larger than the tile) it is ``fn(whole image)`` bit for bit.

    Shape:
        ``cube``: ``(bands, H, W)``; ``fn``: ``(bands, h, w) -> (bands, h, w)``;
        returns ``(bands, H, W)`` float32.

    Examples
    --------
    >>> cube = np.arange(2 * 9 * 7, dtype=np.uint16).reshape(2, 9, 7)
    >>> res = run_tiled(cube, lambda x: 2 * x, tile=4, overlap=2)
    >>> bool(np.array_equal(res, 2 * cube.astype(np.float32)))
    True
    """
    shape = tuple(getattr(cube, "shape", ()))
    if len(shape) != 3:
        raise InputError(f"cube must be (bands, H, W), got shape {shape}")
    bands, height, width = shape
    if min(shape) < 1:
        raise InputError(f"cube of shape {shape} is empty")
    (tile_h, ys), (tile_w, xs) = _plan(height, width, tile, overlap)

    in_memory = isinstance(out, np.ndarray)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
        in_memory = True
    elif np.dtype(getattr(out, "dtype", None)) != np.float32 or tuple(out.shape) != shape:
        found = f"{out.dtype} {out.shape}" if hasattr(out, "shape") else type(out).__name__
        raise InputError(f"out must be a float32 array of shape {shape}, got {found}")
    elif in_memory and isinstance(cube, np.ndarray) and np.may_share_memory(out, cube):
        raise InputError("out must not share memory with cube (tiles overlap)")

    # Sum of the weights of the tiles seen so far, per pixel: the only other full-size
    # array. 0 marks a pixel no tile has reached yet (weights are always > 0).
    weight_sum = np.zeros((height, width), dtype=np.float32)
    kwargs = _progress_kwargs(progress)
    bar = None if kwargs is None else tqdm(total=len(ys) * len(xs), **kwargs)
    if on_tile is not None:
        on_tile(0, len(ys) * len(xs))
    plan = [
        (Tile(y, y + tile_h, x, x + tile_w), (*_shared(ys, tile_h, i), *_shared(xs, tile_w, j)))
        for i, y in enumerate(ys)
        for j, x in enumerate(xs)
    ]
    blocks = (_read(cube, window, transform) for window, _ in plan)
    results = (mapper or map)(fn, blocks)
    try:
        for done, ((window, shared), result) in enumerate(zip(plan, results, strict=True), start=1):
            result = np.asarray(result, dtype=np.float32)
            if result.shape != (bands, *window.shape):
                raise InputError(
                    f"fn returned shape {result.shape} for a tile of shape {(bands, *window.shape)}"
                )
            weights = blend_window(tile_h, tile_w, shared)
            rows, cols = window.window
            index = (slice(None), rows, cols)
            current = out[index]  # a view in memory; a copy from a file (Scratch)
            _accumulate(current, weight_sum[rows, cols], result, weights)
            if not in_memory:
                out[index] = current
            if bar is not None:
                bar.update()
            if on_tile is not None:
                on_tile(done, len(plan))
    finally:
        if bar is not None:
            bar.close()
    return out


def _accumulate(
    current: np.ndarray, weight_sum: np.ndarray, result: np.ndarray, weights: np.ndarray
) -> None:
    """Fold one tile into the running weighted mean, in place (views into the outputs)."""
    fresh = weight_sum == 0  # pixels this tile reaches first: take its value as is
    weight_sum += weights
    if fresh.all():
        current[...] = result
        return
    ratio = weights / weight_sum  # in (0, 1]
    # current += ratio * (result - current): exact where result == current. Fresh
    # pixels may hold garbage (out is not cleared) and are overwritten just after.
    with np.errstate(invalid="ignore", over="ignore"):
        delta = result - current
        delta *= ratio
        current += delta
    if fresh.any():
        np.copyto(current, result, where=fresh)


# ---------------------------------------------------------------------------------------
# long cubes through a model trained on short band sequences


def band_window_starts(bands: int, window: int, overlap: int) -> list[int]:
    """First bands of the windows of ``window`` consecutive bands covering ``bands`` bands.

    The same geometry as the tiles along a spatial axis: windows start every
    ``window - overlap`` bands and the last one ends at the last band.

    >>> band_window_starts(189, 31, 8)
    [0, 23, 46, 69, 92, 115, 138, 158]
    >>> band_window_starts(31, 31, 8)
    [0]
    """
    window = _integer("band window", window, 1)
    overlap = _integer("band overlap", overlap, 0)
    if overlap >= window:
        raise InputError(f"band overlap ({overlap}) must be smaller than the window ({window})")
    return _axis(_integer("bands", bands, 1), window, overlap)[1]


def run_band_windows(
    fn: Callable[[np.ndarray], np.ndarray], tile: np.ndarray, window: int, overlap: int
) -> np.ndarray:
    """``fn`` over overlapping windows of consecutive bands, blended along the bands.

    For a sequence model trained on sequences of ``window`` bands, run on longer cubes:
    each window of :func:`band_window_starts` goes through ``fn`` on its own and the
    results are blended with the raised-cosine ramps of :func:`blend_window` over the
    shared bands (weights summing to 1 there). A tile of at most ``window`` bands goes
    through ``fn`` whole, unchanged.

    Parameters
    ----------
    fn:
        Maps a float32 ``(window, h, w)`` array to an array of the same shape.
    tile:
        Float32 ``(bands, h, w)``.
    window, overlap:
        Bands per window (``>= 1``) and bands shared by neighbours (``< window``).

    Returns
    -------
    numpy.ndarray
        Float32 ``(bands, h, w)``.
    """
    bands = tile.shape[0]
    if bands <= window:
        return fn(tile)
    starts = band_window_starts(bands, window, overlap)
    out = np.zeros(tile.shape, np.float64)
    total = np.zeros(bands)
    for k, start in enumerate(starts):
        before, after = _shared(starts, window, k)
        weight = _ramp(window, before, after)
        part = fn(np.ascontiguousarray(tile[start : start + window]))
        out[start : start + window] += weight[:, None, None] * part
        total[start : start + window] += weight
    return (out / total[:, None, None]).astype(np.float32)


# ---------------------------------------------------------------------------------------
# memory budget


def tile_for_budget(
    bands: int,
    bytes_per_pixel_band: float,
    max_memory: int,
    *,
    fixed_bytes: int = 0,
    min_tile: int = 32,
    multiple: int = 8,
) -> int:
    """The largest square tile side whose estimated memory fits a budget.

    The estimate is ``bands * side**2 * bytes_per_pixel_band + fixed_bytes``; the side
    is a multiple of ``multiple`` and at least ``min_tile``. No upper bound is applied:
    the caller clips the tile to the image.

    Parameters
    ----------
    bands : int
        Number of bands, ``>= 1``.
    bytes_per_pixel_band : float
        Memory per pixel and band of one tile, ``> 0`` (inference supplies the model's
        cost: activations, buffers, ...).
    max_memory : int
        Budget in bytes.
    fixed_bytes : int
        Memory that does not depend on the tile (weights, the output, ...), ``>= 0``.
    min_tile : int
        Smallest side returned, ``>= 1``.
    multiple : int
        The side is a multiple of this, ``>= 1``.

    Returns
    -------
    int
        The side. When no multiple of ``multiple`` from ``min_tile`` up fits,
        ``min_tile``; with a ``UserWarning`` if not even ``min_tile`` fits.

    Examples
    --------
    >>> tile_for_budget(31, 4.0, 31 * 4 * 100 * 100)
    96
    """
    bands = _integer("bands", bands, 1)
    max_memory = _integer("max_memory", max_memory, 0)
    fixed_bytes = _integer("fixed_bytes", fixed_bytes, 0)
    min_tile = _integer("min_tile", min_tile, 1)
    multiple = _integer("multiple", multiple, 1)
    cost_per_pixel = bands * float(bytes_per_pixel_band)
    if not (math.isfinite(cost_per_pixel) and cost_per_pixel > 0):
        raise InputError(f"bytes_per_pixel_band must be > 0, got {bytes_per_pixel_band!r}")

    def fits(side: int) -> bool:
        return cost_per_pixel * side * side + fixed_bytes <= max_memory

    side = 0
    if max_memory > fixed_bytes:
        side = math.isqrt(int((max_memory - fixed_bytes) / cost_per_pixel))
        while fits(side + 1):  # correct the float estimate, a step or two at most
            side += 1
        while side > 0 and not fits(side):
            side -= 1
    side -= side % multiple
    if side >= min_tile:
        return side
    if not fits(min_tile):
        need = cost_per_pixel * min_tile * min_tile + fixed_bytes
        warnings.warn(
            f"a {min_tile} x {min_tile} tile needs about {need / 2**20:.1f} MiB, over the "
            f"budget of {max_memory / 2**20:.1f} MiB; using {min_tile} anyway",
            stacklevel=2,
        )
    return min_tile
