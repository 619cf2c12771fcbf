"""What every format module shares: :class:`CubeFile`, the format table, small helpers.

Nothing here touches a file's contents; the format modules do, each behind the same
two internal interfaces (see :mod:`ras2s.io.dataset`): an opened *array* (``shape``,
``dtype``, ``[slices]``, ``close()``: the stored array, in the file's axis order) and a
*writer* (``write(window, block)``, ``finish()``, ``close()``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ras2s.errors import InputError

FORMATS: dict[str, str] = {
    ".mat": "mat",
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "h5",
    ".hdf5": "h5",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".hdr": "envi",
    ".zarr": "zarr",
}
"""File extension -> format name. A folder of PNGs (no extension) is format ``"png"``;
a ``.zarr`` is a folder too (a zarr directory store)."""

SUPPORTED = ", ".join(FORMATS) + ", or a folder of per-band .png files"

#: TIFF tags copied from a TIFF input to a TIFF output of the same size: GeoTIFF
#: (ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory and its double
#: and ASCII parameters) and GDAL's (GDAL_METADATA, GDAL_NODATA).
GEOTIFF_TAGS = {
    33550: "ModelPixelScale",
    33922: "ModelTiepoint",
    34264: "ModelTransformation",
    34735: "GeoKeyDirectory",
    34736: "GeoDoubleParams",
    34737: "GeoAsciiParams",
    42112: "GDAL_METADATA",
    42113: "GDAL_NODATA",
}

MAT_NUMERIC = {
    "double",
    "single",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
}

ZARR_MISSING = "zarr is not installed: pip install 'ras2s[scale]'"


@dataclass(frozen=True, eq=False)
class CubeFile:
    """A cube read from a file (or described by an open :class:`ras2s.io.CubeSource`).

    Attributes
    ----------
    data : numpy.ndarray or None
        ``(bands, H, W)``, in the file's own dtype (no conversion, no scaling; a
        non-native byte order is made native). May be a transposed view. None when the
        CubeFile only describes a file (:meth:`ras2s.io.CubeSource.cube_file` without
        data, for ``like=``): then ``shape`` and ``dtype`` still say what it holds.
    path : pathlib.Path
        The file (or PNG folder) that was read.
    format : str
        How it was read: ``"mat"``, ``"npy"``, ``"npz"``, ``"h5"``, ``"tiff"``,
        ``"envi"``, ``"png"`` or ``"zarr"`` (a ``.h5`` holding a MATLAB 7.3 file reads as
        ``"mat"``).
    key : str or None
        Variable / dataset name inside a container (.mat, .npz, .h5, .zarr group), None
        otherwise.
    layout : str
        How the array was stored in the file: ``"HWB"`` or ``"BHW"`` (``"HBW"`` for an
        ENVI bil file).
    metadata : dict
        Format details: ENVI header (wavelength, fwhm, band names, ...), PNG file names,
        TIFF axes, planar configuration, GeoTIFF tags and form (``tile``,
        ``rowsperstrip``, ``compression``, ``predictor``: :class:`ras2s.tiffform.TiffForm`),
        MAT version and header, zarr attributes and chunks, ...
    shape : tuple of 3 int
        ``(bands, H, W)``: ``data.shape`` when data is given.
    dtype : numpy.dtype
        The cube's dtype (native byte order): ``data.dtype`` when data is given.
    """

    data: np.ndarray | None
    path: Path
    format: str
    key: str | None
    layout: str
    metadata: dict
    shape: tuple[int, int, int] | None = field(default=None)
    dtype: np.dtype | None = field(default=None)

    def __post_init__(self) -> None:
        if self.data is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.data.shape))
            object.__setattr__(self, "dtype", self.data.dtype)
        elif self.shape is None or self.dtype is None:
            raise ValueError("a CubeFile without data needs its shape and dtype")


class Opened(NamedTuple):
    """What a format module's ``open`` returns: the stored array and what it knows."""

    array: Any  # shape, dtype, __getitem__(3 slices) in stored order, close()
    format: str
    key: str | None
    metadata: dict
    layout: str | None = None  # decided by the file's metadata (ENVI, TIFF, PNG, zarr)
    convention: str | None = None  # the format's convention (MATLAB: "HWB")
    windowed: bool = True  # reading a window reads only that window from the disk


class Entry(NamedTuple):
    """An array inside a container, as listed before loading it."""

    shape: tuple[int, ...]
    kind: str  # dtype or MATLAB class
    numeric: bool


class InMemory:
    """A whole-file array read on open, behind the same interface as a windowed one."""

    windowed = False

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = tuple(data.shape)
        self.dtype = data.dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        return self.data[key]

    def close(self) -> None:
        """Let the data go."""
        self.data = None


class H5Array:
    """An HDF5 dataset read by h5py slices (only the window's chunks are read).

    ``matlab_order``: a MATLAB 7.3 variable, whose dataset holds the axes reversed, is
    presented in MATLAB order (shape reversed, each window transposed back).
    """

    windowed = True
    fresh = True

    def __init__(self, file: Any, ds: Any, *, matlab_order: bool = False) -> None:
        self.file = file
        self.ds = ds
        self.matlab_order = matlab_order
        shape = tuple(ds.shape or ())
        self.shape = shape[::-1] if matlab_order else shape
        self.dtype = ds.dtype

    def __getitem__(self, key: tuple) -> np.ndarray:
        if self.matlab_order:
            return self.ds[tuple(key)[::-1]].transpose(2, 1, 0)
        return self.ds[tuple(key)]

    def close(self) -> None:
        """Close the HDF5 file."""
        self.file.close()


# --------------------------------------------------------------------------- helpers


def one_line(exc: BaseException) -> str:
    """``"Type: first line of the message"`` (at most 200 characters of it)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def natural_key(name: str) -> list:
    """Sort key that puts ``band_2`` before ``band_10``."""
    return [
        (0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t
    ]


def is_real_numeric(dtype: np.dtype) -> bool:
    """Real integers or floats (by kind: numpy files timedelta64 under signedinteger)."""
    return np.dtype(dtype).kind in "iuf"


def native(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order (the same array when it already is)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def gib(nbytes: int) -> str:
    """A size in words: ``"2.5 GiB"`` from 1 GiB up, else ``"12,345 bytes"``."""
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**30 else f"{nbytes:,} bytes"


def nbytes_of(shape: tuple, dtype: np.dtype) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (no overflow for hostile shapes)."""
    return int(np.prod([int(s) for s in shape], dtype=np.float64)) * np.dtype(dtype).itemsize


def head(path: Path, n: int = 128) -> bytes:
    """The first ``n`` bytes of a file."""
    with open(path, "rb") as fh:
        return fh.read(n)


def mat_class(dtype: np.dtype) -> str:
    """MATLAB's class name for a numpy dtype (``single``, ``double``, ``uint16``, ...)."""
    return {"float64": "double", "float32": "single"}.get(str(dtype), str(dtype))


def describe(name: str, e: Entry) -> str:
    """``'name' is (shape) dtype`` for messages."""
    dims = "" if len(e.shape) == 3 else f"{len(e.shape)}-D "
    kind = e.kind if e.numeric else f"{e.kind}, not numeric"
    return f"'{name}' is {dims}{e.shape} {kind}"


def listing(entries: dict[str, Entry], limit: int = 20) -> str:
    """The entries of a container, described for a message (at most ``limit``)."""
    items = [describe(n, e) for n, e in entries.items()]
    more = f"; ... and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more if items else "(nothing)"


def select(path: Path, entries: dict[str, Entry], key: str | None) -> str:
    """Pick the variable to read: ``key``, else the single 3-D numeric array."""
    if key is not None:
        if key not in entries:
            raise InputError(f"{path}: no variable {key!r}; available: {listing(entries)}")
        if not entries[key].numeric:
            raise InputError(
                f"{path}: {describe(key, entries[key])}; a cube must hold real integers or floats"
            )
        return key
    cands = [n for n, e in entries.items() if e.numeric and len(e.shape) == 3]
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise InputError(
            f"{path}: no 3-D numeric array to read as a cube; found: "
            f"{listing(entries)}; a cube must be 3-D"
        )
    listed = listing({n: entries[n] for n in cands})
    raise InputError(
        f"{path}: several 3-D arrays could be the cube: {listed}; pass --key NAME to choose one"
    )


def whole_file(path: Path, what: str, nbytes: int, max_bytes: int | None) -> None:
    """InputError up front when a file that must be read whole exceeds ``max_bytes``."""
    if max_bytes is not None and nbytes > max_bytes:
        raise InputError(
            f"{path}: {what} must be read whole ({gib(nbytes)}), over the memory budget "
            f"of {gib(int(max_bytes))}; save it as MATLAB -v7.3, .npy, ENVI or .zarr to "
            "read it window by window"
        )
