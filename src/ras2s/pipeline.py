"""The one denoising pipeline, window by window: scan, estimate the range, run, write.

:func:`ras2s.denoise` on an array in memory and ``ras2s denoise`` on a file larger than
its memory budget run the same four passes; only where the windows come from and go to
differs.

1. **Scan** (:func:`scan_missing`): per band, the mean of the valid values, the count of
   nodata and of NaN/Inf values, and the bounding box of the pixels valid in some band.
   Row strips of the whole cube; skipped for integer cubes without nodata.
2. **Range** (:func:`scan_range`): the minimum and maximum, the estimated clean range
   (:func:`ras2s.ranges.clean_range`, strip by strip with :data:`ras2s.ranges.HALO`
   rows of context: the same filtered values as on the whole cube) and an evenly
   strided sample for percentiles (the same voxels, strip by strip, as on the whole
   cube), of the cube as the network sees it (kept bands, missing values filled, the
   valid box).
3. **Network** (:func:`ras2s.tiling.run_tiled`): overlapping tiles, normalised on the
   fly, blended into a float32 buffer: an array in memory, or a :class:`Scratch` file
   when the cube does not fit the budget.
4. **Write** (:func:`write_output`): row strips of the buffer mapped back to the input's
   range and dtype, with skipped bands, nodata and pixels outside the valid box taken
   from the input, handed to a ``write(rows, block)`` callable: the result array, or a
   windowed output file (:func:`ras2s.io.create_cube`).

Between 3 and 4, :func:`scan_output` checks the buffer (NaN, a divergence, a range to
widen: :func:`ras2s.inference.denoise`'s second pass and fallbacks).

Every source is read through ``source[(bands, rows, cols)]`` with three slices (a numpy
array, a memmap, an h5py dataset or a :class:`ras2s.io.CubeSource`): nothing but one
strip or one tile of it is ever held in memory by these passes.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cube import denormalise
from .errors import InputError

__all__ = [
    "Masks",
    "Prepared",
    "Scratch",
    "row_strips",
    "scan_missing",
    "scan_output",
    "scan_range",
    "strip_rows",
    "write_output",
]

#: Values in the evenly strided sample that percentiles are taken from.
PERCENTILE_SAMPLE = 4_000_000


def row_strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive strips of ``rows`` rows covering ``height`` rows."""
    rows = max(1, int(rows))
    for start in range(0, height, rows):
        yield start, min(height, start + rows)


def strip_rows(shape: Sequence[int], bytes_per_voxel: float, budget: int) -> int:
    """Rows per strip so that one strip of a ``(bands, H, W)`` cube costs about ``budget``.

    ``bytes_per_voxel`` is what a pass holds per voxel of its strip (the raw block and
    its float64 work copies). At least 8 rows (fewer only when the cube has fewer).
    """
    bands, height, width = shape
    rows = int(budget // max(1.0, bands * width * bytes_per_voxel))
    return max(1, min(height, max(8, rows)))


def _read(source: Any, bands: slice, rows: slice, cols: slice) -> np.ndarray:
    """A window ``(bands, h, w)`` of ``source`` as a numpy array (not necessarily a copy)."""
    return np.asarray(source[(bands, rows, cols)])


def _band_slice(keep: Sequence[int]) -> tuple[slice, list[int] | None]:
    """The smallest band slice holding ``keep``, and the indices to take within it."""
    first, last = keep[0], keep[-1]
    inner = [b - first for b in keep]
    contiguous = inner == list(range(len(keep)))
    return slice(first, last + 1), None if contiguous else inner


def _missing(block: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Boolean mask of ``block``'s nodata values (NaN matches NaN), or None."""
    if nodata is None:
        return None
    if math.isnan(nodata):
        return np.isnan(block) if block.dtype.kind == "f" else None
    return block == nodata


@dataclass(frozen=True)
class Masks:
    """What :func:`scan_missing` found in a cube ``(bands, H, W)``.

    Attributes
    ----------
    keep : list of int
        Bands given to the network (all but the skipped ones), ascending.
    box : (int, int, int, int)
        ``(top, bottom, left, right)``: the bounding box of the pixels that are not
        nodata in some kept band (the whole image without nodata).
    fills : numpy.ndarray or None
        ``(len(keep),)`` in the cube's dtype: the value each kept band's nodata and
        NaN/Inf values are replaced by (its valid values' mean, rounded for integers; a
        band with none takes the mean of the other bands' means). None: nothing to fill.
    means : numpy.ndarray or None
        ``(len(keep),)`` float64 means of the valid values (None when not scanned).
    nodata : float or None
        The nodata value (NaN allowed).
    nonfinite : int
        NaN/Inf values that are not nodata (filled when ``fills`` is set).
    missing : int
        Values equal to the nodata value (NaN matching NaN).
    """

    keep: list[int]
    box: tuple[int, int, int, int]
    fills: np.ndarray | None = None
    means: np.ndarray | None = None
    nodata: float | None = None
    nonfinite: int = 0
    missing: int = 0


def scan_missing(
    source: Any,
    keep: Sequence[int],
    *,
    nodata: float | None,
    nan_policy: str,
    rows: int,
    progress: Callable[[int], None] | None = None,
    require_valid: bool = True,
) -> Masks:
    """Pass 1: nodata, NaN/Inf and the valid box of ``source`` ``(bands, H, W)``.

    With ``require_valid=False`` a cube without any valid value gives its counts
    (``fills`` None, ``means`` all NaN) instead of the error.

    Raises
    ------
    InputError
        NaN/Inf values with ``nan_policy="error"``, or no valid value at all.
    """
    bands, height, width = source.shape
    keep = list(keep)
    dtype = np.dtype(source.dtype)
    floating = dtype.kind == "f"
    if nodata is None and not floating:
        return Masks(keep, (0, height, 0, width))
    band_slice, inner = _band_slice(keep)
    sums = np.zeros(len(keep))
    counts = np.zeros(len(keep), dtype=np.int64)
    row_any = np.zeros(height, bool)
    col_any = np.zeros(width, bool)
    n_missing = n_bad = 0
    for start, stop in row_strips(height, rows):
        block = _read(source, band_slice, slice(start, stop), slice(None))
        if inner is not None:
            block = block[inner]
        missing = _missing(block, nodata)
        valid = np.isfinite(block) if floating else np.ones(block.shape, bool)
        if missing is not None:
            n_missing += int(np.count_nonzero(missing))
            present = ~missing.all(axis=0)
            row_any[start:stop] |= present.any(axis=1)
            col_any |= present.any(axis=0)
            n_bad += int(np.count_nonzero(~valid & ~missing))
            valid &= ~missing
        else:
            n_bad += int(valid.size - np.count_nonzero(valid))
        sums += np.sum(block, axis=(1, 2), where=valid, dtype=np.float64)
        counts += np.count_nonzero(valid, axis=(1, 2))
        if progress is not None:
            progress(stop - start)
    shape = (bands, height, width)
    if n_bad and nan_policy == "error":
        raise InputError(
            f"the cube {shape} holds {n_bad} NaN or Inf values; pass "
            "nan_policy='fill' (CLI: --nan-policy fill) to replace them by their band's mean"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if not counts.any():
        if not require_valid:
            return Masks(keep, (0, height, 0, width), None, means, nodata, n_bad, n_missing)
        if nodata is not None and n_missing:
            raise InputError(f"the cube {shape} holds only nodata ({nodata})")
        raise InputError(f"the cube {shape} holds no finite value")
    box = (0, height, 0, width)
    if n_missing:
        ys, xs = np.flatnonzero(row_any), np.flatnonzero(col_any)
        box = (int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1)
    if not (n_missing or n_bad):
        return Masks(keep, box, None, means, nodata, 0, 0)
    if n_bad:
        warnings.warn(
            f"{n_bad} NaN/Inf values replaced by their band's mean before denoising",
            stacklevel=4,
        )
    fills = np.where(np.isfinite(means), means, np.nanmean(means))
    if dtype.kind in "iu":
        fills = np.rint(fills)
    return Masks(keep, box, fills.astype(dtype), means, nodata, n_bad, n_missing)


class Prepared:
    """The cube as the network sees it, before normalisation, read window by window.

    Shape ``(len(masks.keep), box_h, box_w)`` in the source's dtype: the kept bands of
    the valid box, with nodata and NaN/Inf values replaced by their band's fill value.
    ``prepared[(bands, rows, cols)]`` (three slices, in box coordinates) returns a new
    array; the source is never modified.
    """

    def __init__(self, source: Any, masks: Masks) -> None:
        self.source = source
        self.masks = masks
        top, bottom, left, right = masks.box
        self.shape = (len(masks.keep), bottom - top, right - left)
        self.dtype = np.dtype(source.dtype)
        self._bands, self._inner = _band_slice(masks.keep)
        self._trivial = (
            self._inner is None
            and self._bands == slice(0, source.shape[0])
            and masks.box == (0, source.shape[1], 0, source.shape[2])
        )

    def __getitem__(self, index: tuple[slice, slice, slice]) -> np.ndarray:
        bands, rows, cols = index
        top, _, left, _ = self.masks.box
        rows = slice(
            top + (rows.start or 0), top + (self.shape[1] if rows.stop is None else rows.stop)
        )
        cols = slice(
            left + (cols.start or 0), left + (self.shape[2] if cols.stop is None else cols.stop)
        )
        block = _read(self.source, self._bands, rows, cols)
        if self._inner is not None:
            block = block[self._inner]
        fills = self.masks.fills
        if fills is not None:
            bad = _missing(block, self.masks.nodata)
            if self.dtype.kind == "f":
                finite = np.isfinite(block)
                bad = ~finite if bad is None else bad | ~finite
            if bad is not None and bad.any():
                block = np.where(bad, fills[:, None, None], block)
        return block[bands] if bands != slice(None) else block

    @property
    def trivial(self) -> bool:
        """True when the prepared cube is the source itself (all bands, no fill, no box)."""
        return self._trivial and self.masks.fills is None


@dataclass
class RangeScan:
    """What :func:`scan_range` measured: ``lo``/``hi`` (min/max), ``clean`` and ``sample``."""

    lo: float
    hi: float
    clean: tuple[float, float] | None = None
    sample: np.ndarray | None = None


def _strip_sample(
    strip: np.ndarray, shape: tuple[int, int, int], rows: tuple[int, int], step: int
) -> Iterator[np.ndarray]:
    """Per band, the voxels of ``strip`` (rows ``rows`` of a ``shape`` cube) in a stride.

    The voxels of ``(bands, H, W)`` whose flat (C-order) index is a multiple of
    ``step``, as float64: the same sample as ``cube.reshape(-1)[::step]``, found strip
    by strip.
    """
    bands, height, width = shape
    start, _ = rows
    flat = strip.reshape(bands, -1)
    for b in range(bands):
        first = b * height * width + start * width
        yield flat[b, (-first) % step :: step].astype(np.float64)


def scan_range(
    prepared: Any,
    *,
    clean: bool,
    sample: bool,
    rows: int,
    progress: Callable[[int], None] | None = None,
    threads: int = 1,
) -> RangeScan:
    """Pass 2: min/max, the clean range and a percentile sample of ``prepared``.

    ``prepared`` ``(bands, H, W)`` with finite values (:class:`Prepared`). ``clean``:
    also :func:`ras2s.ranges.clean_range`, strip by strip with
    :data:`~ras2s.ranges.HALO` rows of context (equal to the whole-cube estimate to
    about 1e-15 of the span); ``sample``: the voxels ``cube.reshape(-1)[::step]`` (at
    most :data:`PERCENTILE_SAMPLE`), float64. ``threads``: threads filtering groups of
    bands at once for the clean range (the result does not depend on it).
    """
    from .ranges import HALO, clean_range

    bands, height, width = prepared.shape
    lo, hi = np.inf, -np.inf
    clo, chi = np.inf, -np.inf
    size = bands * height * width
    step = max(1, size // PERCENTILE_SAMPLE)
    parts: list[np.ndarray] = []
    for start, stop in row_strips(height, rows):
        halo_start = max(0, start - HALO) if clean else start
        halo_stop = min(height, stop + HALO) if clean else stop
        block = prepared[(slice(None), slice(halo_start, halo_stop), slice(None))]
        own = block[:, start - halo_start : stop - halo_start]
        lo = min(lo, float(own.min()))
        hi = max(hi, float(own.max()))
        if clean:
            strip_lo, strip_hi = clean_range(
                block, rows=slice(start - halo_start, stop - halo_start), threads=threads
            )
            clo, chi = min(clo, strip_lo), max(chi, strip_hi)
        if sample:
            parts.extend(_strip_sample(own, prepared.shape, (start, stop), step))
        if progress is not None:
            progress(stop - start)
    return RangeScan(
        lo,
        hi,
        (clo, chi) if clean else None,
        np.concatenate(parts) if sample else None,
    )


@dataclass
class OutputScan:
    """What :func:`scan_output` found in a network output buffer."""

    finite: bool
    lo: float
    hi: float
    sample: np.ndarray | None


def scan_output(buffer: Any, *, rows: int, sample: bool) -> OutputScan:
    """Pass 3b: are all outputs finite, their min/max, and a strided sample (float64)."""
    bands, height, width = buffer.shape
    step = max(1, bands * height * width // PERCENTILE_SAMPLE)
    finite, lo, hi = True, np.inf, -np.inf
    parts: list[np.ndarray] = []
    for start, stop in row_strips(height, rows):
        block = np.asarray(buffer[(slice(None), slice(start, stop), slice(None))])
        if not np.isfinite(block).all():
            return OutputScan(False, np.nan, np.nan, None)
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        if sample:
            parts.extend(_strip_sample(block, buffer.shape, (start, stop), step))
    return OutputScan(finite, lo, hi, np.concatenate(parts) if sample else None)


def write_output(
    source: Any,
    buffer: Any | None,
    masks: Masks,
    span: tuple[float, float],
    dtype: np.dtype,
    write: Callable[[slice, np.ndarray], None],
    *,
    rows: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Pass 4: the output cube, strip by strip, handed to ``write(rows, block)``.

    ``block`` is ``(bands, h, W)`` in ``dtype``: the buffer (``(len(keep), box_h,
    box_w)`` float32 in [0, 1] units, or None for a constant cube) mapped back to
    ``span`` for the kept bands inside the valid box, the input itself everywhere else
    (skipped bands, nodata values, pixels outside the box); a valid value that would
    equal the nodata value is moved off it (:func:`ras2s.nodata.keep_off_nodata`).
    ``buffer`` may be the result array itself (float32, same positions): each strip is
    read before it is written.
    """
    from .nodata import keep_off_nodata

    bands, height, width = source.shape
    top, bottom, left, right = masks.box
    keep = masks.keep
    lo, hi = span
    dtype = np.dtype(dtype)
    everything = len(keep) == bands and masks.box == (0, height, 0, width)
    for start, stop in row_strips(height, rows):
        inside = slice(max(start, top), min(stop, bottom))
        raw = None
        if everything and masks.nodata is None and buffer is not None:
            out = denormalise(buffer[(slice(None), slice(start, stop), slice(None))], lo, hi, dtype)
        else:
            raw = _read(source, slice(None), slice(start, stop), slice(None))
            out = np.array(raw, dtype=dtype)
            if buffer is not None and inside.start < inside.stop:
                part = buffer[
                    (slice(None), slice(inside.start - top, inside.stop - top), slice(None))
                ]
                mapped = denormalise(part, lo, hi, dtype)
                local = slice(inside.start - start, inside.stop - start)
                region = out[keep, local, left:right]
                missing = _missing(raw[keep, local, left:right], masks.nodata)
                if missing is not None:
                    mapped = np.where(missing, region, mapped)
                out[keep, local, left:right] = mapped
        if masks.nodata is not None and buffer is not None:
            valid = raw != masks.nodata if not math.isnan(masks.nodata) else None
            out = keep_off_nodata(out, valid, masks.nodata, means=_means(masks, bands))
        write(slice(start, stop), out)
        if progress is not None:
            progress(stop - start)


def _means(masks: Masks, bands: int) -> np.ndarray | None:
    """Per-band valid means over all bands (NaN for skipped ones), for keep_off_nodata."""
    if masks.means is None:
        return None
    out = np.full(bands, np.nan)
    out[masks.keep] = masks.means
    return out


class Scratch:
    """A float32 ``(bands, H, W)`` array in an unlinked temporary file, read by window.

    Used as :func:`ras2s.tiling.run_tiled`'s output when a cube does not fit its memory
    budget. ``scratch[index]`` returns a copy of a window, ``scratch[index] = block``
    writes one, with ``pread``/``pwrite`` (:class:`ras2s.io.raw.RawArray`, through the
    open descriptor's ``/proc/self/fd`` name): the file is never mapped, so the process's
    resident memory holds the window and nothing of the file. The file is unlinked as
    soon as it is created, so nothing is left behind, not even after a kill; its
    ``4 * bands * H * W`` bytes are reserved on the disk at once (a full disk is an
    error before the network runs).
    """

    def __init__(self, shape: tuple[int, int, int], folder: str | os.PathLike | None = None):
        from .io.raw import RawArray, reserve

        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(np.float32)
        self.nbytes = 4 * math.prod(self.shape)
        directory = Path(folder) if folder is not None else None
        handle, name = tempfile.mkstemp(prefix=".ras2s-scratch-", suffix=".f32", dir=directory)
        try:
            os.unlink(name)
            os.ftruncate(handle, max(self.nbytes, 1))
            self.path = Path(f"/proc/self/fd/{handle}")
            if not self.path.exists():  # pragma: no cover - not Linux: map per access
                self.path = None
            else:
                reserve(self.path, self.nbytes)
        except BaseException:
            os.close(handle)
            raise
        self._handle = handle
        self._raw = RawArray(self.path, 0, self.shape, self.dtype) if self.path else None

    def _map(self) -> np.memmap:  # pragma: no cover - not Linux
        return np.memmap(os.fdopen(os.dup(self._handle), "r+b"), np.float32, "r+", 0, self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        if self._raw is not None:
            return self._raw[index]
        mapped = self._map()  # pragma: no cover
        return np.array(mapped[index])  # pragma: no cover

    def __setitem__(self, index: Any, value: np.ndarray) -> None:
        if self._raw is not None:
            self._raw.write(index, value)
            return
        mapped = self._map()  # pragma: no cover
        mapped[index] = value  # pragma: no cover
        mapped.flush()  # pragma: no cover

    def close(self) -> None:
        """Release the file (its space returns to the file system)."""
        if self._handle >= 0:
            os.close(self._handle)
            self._handle = -1

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
