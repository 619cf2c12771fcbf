"""MATLAB ``.mat``: v4/v5 through scipy (whole file), v7.3 through h5py (windowed).

MATLAB's convention is rows x cols x bands (HWB). A v7.3 file is HDF5 behind a 512-byte
MATLAB header; HDF5 returns MATLAB's column-major arrays axes-reversed, so a v7.3 array
is presented in MATLAB order (:class:`~ras2s.io.base.H5Array` with ``matlab_order``)
before the layout rule applies.
Outputs are v5 (one uncompressed variable) up to :data:`_MAT73_THRESHOLD` bytes and
v7.3 beyond it, or beyond the memory budget of :func:`ras2s.io.create_cube` (a v5 file
is written whole from memory, a v7.3 file window by window).
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import matfile_version

from ras2s.errors import InputError
from ras2s.matfile import check_mat4, check_mat5

from .base import (
    MAT_NUMERIC,
    Entry,
    H5Array,
    InMemory,
    Opened,
    head,
    mat_class,
    nbytes_of,
    select,
    whole_file,
)
from .checks import h5_check_stored

_MAT73_THRESHOLD = 2**31  # bytes; .mat v5 cannot hold a variable this large
_MAT73_MAGIC = b"MATLAB 7.3"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SCIPY_DTYPES = {
    "double": "float64",
    "single": "float32",
    **{c: c for c in MAT_NUMERIC if c.startswith(("int", "uint"))},
}


def open_mat(path: Path, key: str | None, max_bytes: int | None) -> Opened:
    """A MATLAB variable: v7.3 windowed, v4/v5 read whole."""
    start = head(path)
    if start.startswith(_HDF5_MAGIC):
        raise InputError(
            f"{path}: plain HDF5 without a MATLAB header, not a MAT-file; "
            "rename it to .h5 to read it as HDF5"
        )
    major, _ = matfile_version(str(path))
    if major == 2:
        return open_mat73(path, key, start)
    # scipy trusts the file: its compiled v5 reader crashes on some broken tags, and both
    # readers allocate what a header declares before reading it
    (check_mat5 if major == 1 else check_mat4)(path)
    entries = {n: Entry(tuple(s), c, c in MAT_NUMERIC) for n, s, c in scipy.io.whosmat(str(path))}
    name = select(path, entries, key)
    entry = entries[name]
    version = "5" if major == 1 else "4"
    if len(entry.shape) == 3 and entry.kind in _SCIPY_DTYPES:
        what = f"a MATLAB v{version} file"
        whole_file(path, what, nbytes_of(entry.shape, _SCIPY_DTYPES[entry.kind]), max_bytes)
    data = scipy.io.loadmat(str(path), variable_names=[name], mat_dtype=False)[name]
    header = start[:116].decode("latin-1").strip(" \x00") if major == 1 else ""
    meta = {"mat_version": version, "header": header}
    return Opened(InMemory(data), "mat", name, meta, convention="HWB", windowed=False)


def open_mat73(path: Path, key: str | None, start: bytes) -> Opened:
    """A MATLAB v7.3 variable (HDF5 behind a MATLAB header), windowed."""
    entries: dict[str, Entry] = {}
    f = h5py.File(path, "r")
    try:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                cls = obj.attrs.get("MATLAB_class", b"")
                cls = cls.decode() if isinstance(cls, bytes) else str(cls)
                empty = bool(obj.attrs.get("MATLAB_empty", 0))
                numeric = cls in MAT_NUMERIC and obj.dtype.kind in "iuf" and not empty
                entries[name] = Entry(tuple(obj.shape or ())[::-1], cls or str(obj.dtype), numeric)

        f.visititems(visit)
        name = select(path, entries, key.lstrip("/") if key else None)
        ds = f[name]
        h5_check_stored(path, ds)
    except BaseException:
        f.close()
        raise
    header = start[:116].decode("latin-1").strip(" \x00")
    meta = {"mat_version": "7.3", "header": header}
    return Opened(H5Array(f, ds, matlab_order=True), "mat", name, meta, convention="HWB")


def mat_writer(tmp: Path, plan) -> object:
    """A v5 writer (whole, from memory), or v7.3 (windowed) for a cube too large for v5.

    Too large: :data:`_MAT73_THRESHOLD` bytes or more (v5 cannot hold it), or more than
    the memory budget ``plan.max_bytes`` (a v5 file is written from memory).
    """
    from .dataset import Buffered

    nbytes = nbytes_of(plan.shape, plan.dtype)
    if nbytes >= _MAT73_THRESHOLD or (plan.max_bytes is not None and nbytes > plan.max_bytes):
        return Mat73Writer(tmp, plan)
    return Buffered(tmp, plan, write_mat5)


def write_mat5(tmp: Path, data: np.ndarray, key: str, layout: str, like: object) -> None:
    """A whole bands-first cube as one uncompressed MATLAB v5 variable (rows x cols x bands)."""
    with open(tmp, "wb") as fh:
        scipy.io.savemat(
            fh, {key: data.transpose(1, 2, 0)}, do_compression=False, format="5", oned_as="column"
        )


class Mat73Writer:
    """A MATLAB v7.3 output (HDF5 with MATLAB's 512-byte header), window by window."""

    windowed = True

    def __init__(self, tmp: Path, plan) -> None:
        self.tmp = tmp
        b, h, w = plan.shape
        self.file = h5py.File(tmp, "w", userblock_size=512)
        # HDF5 stores MATLAB's column-major rows x cols x bands as (bands, cols, rows)
        self.ds = self.file.create_dataset(plan.key, shape=(b, w, h), dtype=plan.dtype)
        self.ds.attrs["MATLAB_class"] = np.bytes_(mat_class(plan.dtype))

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Write a bands-first ``block`` at the bands-first ``key`` (three slices)."""
        bands, rows, cols = key
        self.ds[bands, cols, rows] = block.transpose(0, 2, 1)

    def finish(self) -> None:
        """Close the HDF5 file, then write the MATLAB header into its user block."""
        self.file.close()
        text = (
            f"MATLAB 7.3 MAT-file, Platform: ras2s, Created on: "
            f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 ."
        )
        header = text.encode("ascii").ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
        with open(self.tmp, "r+b") as fh:
            fh.write(header.ljust(512, b"\x00"))

    def close(self) -> None:
        """Close the file if it is still open."""
        if self.file.id.valid:
            self.file.close()


def _write_mat73(tmp: Path, data: np.ndarray, key: str) -> None:
    """A whole bands-first cube as a MATLAB v7.3 file (what a large .mat output gets)."""
    from .dataset import WritePlan

    plan = WritePlan(tuple(data.shape), data.dtype, key, "HWB", None, False, None)
    writer = Mat73Writer(tmp, plan)
    try:
        writer.write((slice(None),) * 3, data)
        writer.finish()
    finally:
        writer.close()
