"""Raw arrays in a file, mapped only for the time of one read or one write.

A memory map that stays open keeps every page it touched counted in the process's
resident memory until it is unmapped. :class:`MappedArray` opens the map inside each
read (or write) and drops it before returning, so that the resident pages are one
window's, never the file's. Used for ``.npy``, ENVI data files, uncompressed TIFFs and
the scratch of TIFF outputs that are converted at commit.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np


class MappedArray:
    """A ``shape`` x ``dtype`` array stored raw at ``offset`` in ``path``.

    ``array[key]`` maps the file, and returns a view that holds the map until the view
    is dropped: copy what you need from it, then let it go. :meth:`write` maps it
    writable, assigns, and unmaps.
    """

    windowed = True
    fresh = False  # what [key] returns is a view into the map, not a new array

    def __init__(
        self, path: Path, offset: int, shape: tuple, dtype: np.dtype, order: str = "C"
    ) -> None:
        self.path = Path(path)
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.order = order

    def _map(self, mode: str) -> np.memmap:
        return np.memmap(
            self.path, self.dtype, mode, offset=self.offset, shape=self.shape, order=self.order
        )

    def __getitem__(self, key: tuple) -> np.ndarray:
        return self._map("r")[key]

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Assign ``block`` at ``key`` (stored order) through a map made for this write."""
        mm = self._map("r+")
        mm[key] = block
        del mm

    def close(self) -> None:
        """Nothing to release (no map outlives a read or a write)."""


def reserve(path: Path, size: int) -> None:
    """Give ``path`` its ``size`` bytes on the disk now (``posix_fallocate``).

    Writes through a memory map into a sparse file that the disk cannot hold end the
    process (SIGBUS); reserved up front, a full disk or a file-size limit is an
    ordinary error before anything is written. File systems that cannot reserve are
    left sparse.
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


def raw_file(path: Path, shape: tuple, dtype: np.dtype) -> MappedArray:
    """A new file at ``path`` sized and reserved for a raw C-order ``shape`` x ``dtype``."""
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    with open(path, "wb") as fh:
        fh.truncate(size)
    reserve(path, size)
    return MappedArray(path, 0, shape, dtype)
