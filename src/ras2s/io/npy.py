"""NumPy ``.npy`` (window by window, :mod:`ras2s.io.raw`) and ``.npz`` (whole file).

Neither has a layout convention: the layout rule's rule 4 decides (or ``--layout``).
An ``.npy`` header is read and checked (length, declared size against the file) before
anything is mapped; an ``.npz`` lists its arrays from their headers alone.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ras2s.errors import InputError

from .base import Entry, InMemory, Opened, head, is_real_numeric, nbytes_of, select, whole_file
from .checks import check_declared, npy_header
from .layout import from_bhw, stored_key, stored_shape
from .raw import RawArray, reserve

_PICKLED = "holds pickled objects, not a numeric array; a cube must hold real integers or floats"


def open_npy(path: Path, key: str | None, max_bytes: int | None) -> Opened:
    """An ``.npy`` file as a :class:`~ras2s.io.raw.RawArray` (windowed)."""
    start = head(path, 6)
    if start.startswith(b"PK"):
        raise InputError(f"{path}: is an .npz archive, not an .npy array; rename it to .npz")
    if start != b"\x93NUMPY":
        raise InputError(f"{path}: not an .npy file (no NumPy header); the file may be corrupt")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        shape, dtype, fortran = npy_header(fh, size)
        offset = fh.tell()
    if dtype.hasobject:
        raise InputError(f"{path}: {_PICKLED}")
    check_declared(path, shape, dtype, size - offset, "its header")
    array = RawArray(path, offset, shape, dtype, order="F" if fortran else "C")
    return Opened(array, "npy", None, {})


def open_npz(path: Path, key: str | None, max_bytes: int | None) -> Opened:
    """One array of an ``.npz`` archive, read whole."""
    if not head(path, 4).startswith(b"PK"):
        raise InputError(f"{path}: not an .npz (zip) archive; the file may be corrupt")
    entries = npz_entries(path)  # from the headers: nothing is loaded to list them
    name = select(path, entries, key)
    entry = entries[name]
    if len(entry.shape) == 3 and entry.numeric:
        whole_file(path, "an .npz array", nbytes_of(entry.shape, entry.kind), max_bytes)
    with np.load(path, allow_pickle=False) as z:
        data = z[name]
    return Opened(InMemory(data), "npz", name, {}, windowed=False)


def npz_entries(path: Path) -> dict[str, Entry]:
    """The arrays of an .npz archive, from their headers; refuses one larger than stored."""
    entries: dict[str, Entry] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with archive.open(info) as fh:
                shape, dtype, _ = npy_header(fh, info.file_size)
                have = info.file_size - fh.tell()
            if dtype.hasobject:
                entries[name] = Entry((), "object", False)
                continue
            check_declared(path, shape, dtype, have, f"array {name!r}")
            entries[name] = Entry(tuple(shape), str(dtype), is_real_numeric(dtype))
    return entries


class NpyWriter:
    """An ``.npy`` output written window by window.

    The header is written (by numpy) and the whole file reserved on creation; each
    :meth:`write` writes the block in the stored layout at its offsets.
    """

    windowed = True

    def __init__(self, tmp: Path, plan) -> None:
        self.layout = plan.layout
        shape = stored_shape(plan.shape, plan.layout)
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=plan.dtype, shape=shape)
        offset = mm.offset
        del mm
        reserve(tmp, offset + nbytes_of(shape, plan.dtype))
        self.array = RawArray(tmp, offset, shape, plan.dtype)

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Write a bands-first ``block`` at the bands-first ``key`` (three slices)."""
        self.array.write(stored_key(key, self.layout), from_bhw(block, self.layout))

    def finish(self) -> None:
        """Nothing left to do: header and data are on the disk."""

    def close(self) -> None:
        """Nothing to release (the file is open only during a write)."""


def write_npz(tmp: Path, data: np.ndarray, key: str, layout: str, like: object) -> None:
    """A whole bands-first cube as one array of an ``.npz`` archive, in ``layout``."""
    with open(tmp, "wb") as fh:
        np.savez(fh, **{key: from_bhw(data, layout)})
