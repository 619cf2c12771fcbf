"""HDF5 ``.h5``/``.hdf5`` through h5py: datasets anywhere in the file, windowed.

No layout convention (rule 4 of the layout rule, or ``--layout``). A file that starts
with a MATLAB 7.3 header is read as MATLAB (:mod:`ras2s.io.mat`) whatever its name.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .base import Entry, H5Array, Opened, head, select
from .checks import h5_check_stored
from .layout import from_bhw, stored_key, stored_shape
from .mat import _MAT73_MAGIC, open_mat73


def open_h5(path: Path, key: str | None, max_bytes: int | None) -> Opened:
    """An HDF5 dataset (``key``, else the single 3-D numeric one), windowed."""
    start = head(path)
    if start.startswith(_MAT73_MAGIC):
        return open_mat73(path, key, start)
    entries: dict[str, Entry] = {}
    f = h5py.File(path, "r")
    try:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                entries[name] = Entry(
                    tuple(obj.shape or ()), str(obj.dtype), obj.dtype.kind in "iuf"
                )

        f.visititems(visit)
        name = select(path, entries, key.lstrip("/") if key else None)
        ds = f[name]
        h5_check_stored(path, ds)
    except BaseException:
        f.close()
        raise
    return Opened(H5Array(f, ds), "h5", name, {})


class H5Writer:
    """An HDF5 output: one dataset, ``plan.key``, in ``plan.layout``, written by slices."""

    windowed = True

    def __init__(self, tmp: Path, plan) -> None:
        self.layout = plan.layout
        self.file = h5py.File(tmp, "w")
        shape = stored_shape(plan.shape, plan.layout)
        self.ds = self.file.create_dataset(plan.key, shape=shape, dtype=plan.dtype)

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Write a bands-first ``block`` at the bands-first ``key`` (three slices)."""
        self.ds[stored_key(key, self.layout)] = np.ascontiguousarray(from_bhw(block, self.layout))

    def finish(self) -> None:
        """Close the file (HDF5 flushes what it buffered)."""
        self.file.close()

    def close(self) -> None:
        """Close the file if it is still open."""
        if self.file.id.valid:
            self.file.close()
