"""Raw arrays in a file (``.npy``, ENVI, uncompressed TIFF, scratch), read and written by offset.

A window is read with ``pread`` straight into the array returned, and written with
``pwrite`` from the block given: the process never maps the file, so its resident
memory holds the window and nothing of the file. (A memory map, even one opened for
each read and dropped after it, counts every page it touched while it lives, and on
kernels that keep the page cache in large folios a touched page maps its whole folio:
reading 13 MB windows of a 200 MB file through ``numpy.memmap`` peaked 108 MB above
the start here, through ``pread`` 24 MB.)

Reads choose between one call per contiguous run and one call per plane (then the
window is cut out of whole rows): runs when they are long, or when whole rows would
copy more than a call costs (``_CALL_BYTES``). Writes
make one call per contiguous run only, so that processes writing disjoint windows of
one file never touch each other's bytes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

#: bytes read or written by one call at most (a larger run is split)
PIECE = 32 * 2**20
#: a run at least this long is read by itself (shorter ones: whole rows, then cut)
_LONG_RUN = 64 * 2**10
#: what one more call costs, in bytes copied: a run is also read by itself when its row
#: holds more than this beyond it (pread from the page cache here: about 1 us a call,
#: 9 GB/s; a 256-px float64 tile window of a 10,200-px row read whole rows, 40x its size)
_CALL_BYTES = 16 * 2**10


def _extent(s: slice) -> int:
    return len(range(s.start, s.stop, s.step))


def _normal(key: tuple, shape: tuple) -> tuple[slice, slice, slice]:
    out = []
    for k, n in zip(key, shape, strict=True):
        if not isinstance(k, slice):
            k = slice(int(k), int(k) + 1)
        start, stop, step = k.indices(n)
        if step < 1:
            raise ValueError(f"only forward steps are supported, got {k}")
        out.append(slice(start, max(start, stop), step))
    return tuple(out)  # type: ignore[return-value]


def _pread_into(fd: int, buf: memoryview, offset: int) -> None:
    """Fill ``buf`` from ``offset``; OSError when the file ends first."""
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [buf[done:]], offset + done)
        if got == 0:
            raise OSError(errno.EIO, f"the file ends at byte {offset + done:,}, inside the data")
        done += got


def _pwrite_from(fd: int, buf: memoryview, offset: int) -> None:
    done = 0
    while done < len(buf):
        done += os.pwritev(fd, [buf[done:]], offset + done)


def _bytes(a: np.ndarray) -> memoryview:
    return memoryview(a).cast("B")


class RawArray:
    """A ``shape`` x ``dtype`` array stored raw (C or Fortran order) at ``offset`` in ``path``.

    ``array[key]`` (three slices or ints, stored order) reads that box into a new
    C-contiguous array; :meth:`take` also transposes and converts; :meth:`write`
    writes a box. The file is opened for each call and closed after it.
    """

    windowed = True
    fresh = True  # what [key] returns is a new array

    def __init__(
        self, path: Path, offset: int, shape: tuple, dtype: np.dtype, order: str = "C"
    ) -> None:
        self.path = Path(path)
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.order = order

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = _normal(tuple(key), self.shape)
        if self.order == "F":  # a Fortran array is the C array of the reversed shape, .T
            return self._read(key[::-1], self.shape[::-1]).T
        return self._read(key, self.shape)

    def take(self, key: tuple, axes: tuple, dtype: np.dtype) -> np.ndarray:
        """A new C-contiguous ``array[key].transpose(axes)`` as ``dtype``."""
        part = self[key].transpose(axes)
        if part.flags.c_contiguous and part.dtype == dtype:
            return part
        return part.astype(dtype, order="C")

    def _read(self, key: tuple, shape: tuple) -> np.ndarray:
        s0, s1, s2 = key
        n0, n1, n2 = (_extent(s) for s in key)
        out = np.empty((n0, n1, n2), self.dtype)
        if out.size == 0:
            return out
        item = self.dtype.itemsize
        row, plane = shape[2] * item, shape[1] * shape[2] * item
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if s2.step == 1 and n2 == shape[2] and s1.step == 1:  # whole rows: a run per plane
                for i, p in enumerate(range(s0.start, s0.stop, s0.step)):
                    at = self.offset + p * plane + s1.start * row
                    for lo in range(0, n1, max(1, PIECE // row)):
                        part = out[i, lo : lo + max(1, PIECE // row)]
                        _pread_into(fd, _bytes(part), at + lo * row)
            elif s2.step == 1 and (n2 * item >= _LONG_RUN or row - n2 * item > _CALL_BYTES):
                for i, p in enumerate(range(s0.start, s0.stop, s0.step)):
                    for j, r in enumerate(range(s1.start, s1.stop, s1.step)):
                        at = self.offset + p * plane + r * row + s2.start * item
                        _pread_into(fd, _bytes(out[i, j]), at)
            else:  # short runs: whole rows of the window's row span, then cut
                rows = max(1, PIECE // row)
                first, last = s1.start, s1.start + (n1 - 1) * s1.step
                for i, p in enumerate(range(s0.start, s0.stop, s0.step)):
                    j = 0
                    for lo in range(first, last + 1, rows * s1.step):
                        hi = min(last + 1, lo + rows * s1.step)
                        span = np.empty((hi - lo, shape[2]), self.dtype)
                        _pread_into(fd, _bytes(span), self.offset + p * plane + lo * row)
                        cut = span[:: s1.step, s2]
                        out[i, j : j + len(cut)] = cut
                        j += len(cut)
        finally:
            os.close(fd)
        return out

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Write ``block`` (stored order, steps of 1) at ``key``: one call per run."""
        if self.order != "C":  # pragma: no cover - outputs are always C order
            raise ValueError("only C-order raw arrays are written")
        s0, s1, s2 = _normal(tuple(key), self.shape)
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.size == 0:
            return
        item = self.dtype.itemsize
        row, plane = self.shape[2] * item, self.shape[1] * self.shape[2] * item
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for i, p in enumerate(range(s0.start, s0.stop)):
                if s2.start == 0 and s2.stop == self.shape[2]:  # whole rows: one run
                    _pwrite_from(fd, _bytes(block[i]), self.offset + p * plane + s1.start * row)
                    continue
                for j, r in enumerate(range(s1.start, s1.stop)):
                    at = self.offset + p * plane + r * row + s2.start * item
                    _pwrite_from(fd, _bytes(block[i, j]), at)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Nothing to release (the file is open only during a call)."""


def reserve(path: Path, size: int) -> None:
    """Give ``path`` its ``size`` bytes on the disk now (``posix_fallocate``).

    A full disk or a file-size limit is then an error before anything is written, not
    half way. File systems that cannot reserve are left sparse.
    """
    if not hasattr(os, "posix_fallocate") or size <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def raw_file(path: Path, shape: tuple, dtype: np.dtype) -> RawArray:
    """A new file at ``path`` sized and reserved for a raw C-order ``shape`` x ``dtype``."""
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    with open(path, "wb") as fh:
        fh.truncate(size)
    reserve(path, size)
    return RawArray(path, 0, shape, dtype)


class BandsFirst:
    """A raw array stored in ``layout`` seen bands first: ``shape`` and ``[bands, rows, cols]``."""

    def __init__(self, raw: RawArray, layout: str) -> None:
        from .layout import FROM_BHW, TO_BHW

        self.raw = raw
        self._to = TO_BHW[layout]
        self._from = FROM_BHW[layout]
        self.shape = tuple(raw.shape[i] for i in self._to)
        self.dtype = raw.dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = _normal(tuple(key), self.shape)
        return self.raw.take(tuple(key[i] for i in self._from), self._to, self.dtype)
