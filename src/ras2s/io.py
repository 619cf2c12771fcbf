"""Read and write hyperspectral cubes; decide their layout; write atomically.

In memory a cube is always **bands first**, ``(bands, H, W)``, in the file's own dtype.
This module is the only place in ras2s that transposes.

Supported formats (by extension): ``.mat`` (MATLAB v4/v5 via scipy, v7.3 via h5py),
``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.tif``/``.tiff``, ENVI ``.hdr`` (+ its data
file) and a folder of per-band PNGs (CAVE style).

Layout rule
-----------
How the spectral axis of a stored 3-D array is found, first rule that applies wins:

1. ``--layout HWB`` (bands last) or ``--layout BHW`` (bands first) always wins.
2. ENVI and TIFF say it in their metadata: ENVI ``interleave`` (bsq = BHW, bip = HWB,
   bil = rows x bands x cols, reported as ``HBW``); TIFF axes (``...YX`` = bands first,
   ``YX...`` = bands last). A PNG folder is one band per file.
3. ``.mat`` files (v5 and v7.3) follow MATLAB's convention rows x cols x bands (HWB).
   A v7.3 array, which HDF5 returns axes-reversed, is put back in MATLAB order first.
   Exception: a shape whose last two axes are equal and differ from the first
   (e.g. 64 x 100 x 100) looks like band-first data saved in a .mat; that contradicts
   the convention, so it is an error asking for ``--layout``.
4. Containers with no convention (``.npy``, ``.npz``, plain ``.h5``): the spectral axis
   is the first or the last one. Rows x cols x bands when the first two sizes are equal
   and the last differs (512 x 512 x 31); bands x rows x cols when the last two are
   equal and the first differs (31 x 512 x 512). Anything else (all sizes different,
   all equal, or first == last) is an error asking for ``--layout``: never a guess.

Nothing is ever squeezed, cropped, resampled, reordered or converted (only a
non-native byte order is made native).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import scipy.io
import tifffile
from PIL import Image
from scipy.io.matlab import matfile_version
from spectral.io import envi

from ras2s.errors import InputError, LayoutError, OutputError, Ras2sError
from ras2s.matfile import check_mat4, check_mat5
from ras2s.tiffcheck import check_tiff_chain
from ras2s.tiffform import TiffForm, form_of, write_cog, write_tiff

try:
    import resource
except ImportError:  # pragma: no cover - Windows: no file-size limits to recognise
    resource = None  # type: ignore[assignment]

__all__ = [
    "FORMATS",
    "GEOTIFF_TAGS",
    "CubeFile",
    "FolderLock",
    "atomic_path",
    "bad_bands",
    "check_input",
    "check_output",
    "check_replaceable",
    "check_suffix",
    "cube_nodata",
    "default_output_path",
    "detect_layout",
    "expand_inputs",
    "find_cubes",
    "input_files",
    "output_files",
    "is_png_cube_folder",
    "read_cube",
    "sha256_array",
    "sha256_file",
    "write_atomically",
    "write_cube",
    "write_text_atomically",
]

FORMATS: dict[str, str] = {
    ".mat": "mat",
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "h5",
    ".hdf5": "h5",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".hdr": "envi",
}
"""File extension -> format name. A folder of PNGs (no extension) is format ``"png"``."""

LAYOUTS = ("HWB", "BHW")
_MAT_NUMERIC = {
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
_MAT73_THRESHOLD = 2**31  # bytes; .mat v5 cannot hold a variable this large
_MAT73_MAGIC = b"MATLAB 7.3"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ENVI_INTERLEAVE = {"bsq": "BHW", "bil": "HBW", "bip": "HWB"}
_ENVI_STRUCTURAL = {
    "samples",
    "lines",
    "bands",
    "data type",
    "interleave",
    "byte order",
    "header offset",
    "data file",
}
_ENVI_PER_BAND = {
    "wavelength",
    "fwhm",
    "band names",
    "bbl",
    "data gain values",
    "data offset values",
}
_SUPPORTED = ", ".join(FORMATS) + ", or a folder of per-band .png files"
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


@dataclass(frozen=True, eq=False)
class CubeFile:
    """A cube read from a file.

    Attributes
    ----------
    data : numpy.ndarray
        ``(bands, H, W)``, in the file's own dtype (no conversion, no scaling; a
        non-native byte order is made native). May be a transposed view.
    path : pathlib.Path
        The file (or PNG folder) that was read.
    format : str
        How it was read: ``"mat"``, ``"npy"``, ``"npz"``, ``"h5"``, ``"tiff"``,
        ``"envi"`` or ``"png"`` (a ``.h5`` holding a MATLAB 7.3 file reads as ``"mat"``).
    key : str or None
        Variable / dataset name inside a container (.mat, .npz, .h5), None otherwise.
    layout : str
        How the array was stored in the file: ``"HWB"`` or ``"BHW"`` (``"HBW"`` for an
        ENVI bil file).
    metadata : dict
        Format details: ENVI header (wavelength, fwhm, band names, ...), PNG file names,
        TIFF axes, planar configuration, GeoTIFF tags and form (``tile``,
        ``rowsperstrip``, ``compression``, ``predictor``: :class:`ras2s.tiffform.TiffForm`),
        MAT version and header, ...
    """

    data: np.ndarray
    path: Path
    format: str
    key: str | None
    layout: str
    metadata: dict


class _Raw(NamedTuple):
    """What a format reader returns: the array as stored in the file."""

    data: np.ndarray
    format: str
    key: str | None
    metadata: dict
    layout: str | None = None  # decided by the file's metadata (ENVI, TIFF, PNG)
    convention: str | None = None  # the format's convention (MATLAB: "HWB")


class _Entry(NamedTuple):
    """An array inside a container, as listed before loading it."""

    shape: tuple[int, ...]
    kind: str  # dtype or MATLAB class
    numeric: bool


# --------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _natural_key(name: str) -> list:
    return [
        (0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t
    ]


def _is_real_numeric(dtype: np.dtype) -> bool:
    # by kind: numpy files timedelta64 under signedinteger, but it is not a number
    return np.dtype(dtype).kind in "iuf"


def _native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _to_bhw(a: np.ndarray, layout: str) -> np.ndarray:
    return {"BHW": a, "HWB": a.transpose(2, 0, 1), "HBW": a.transpose(1, 0, 2)}[layout]


def _from_bhw(a: np.ndarray, layout: str) -> np.ndarray:
    return {"BHW": a, "HWB": a.transpose(1, 2, 0), "HBW": a.transpose(1, 0, 2)}[layout]


def _parse_layout(layout: str | None, source: object) -> str | None:
    if layout is None:
        return None
    up = str(layout).upper()
    if up not in LAYOUTS:
        raise InputError(
            f"{source}: layout must be HWB (bands last) or BHW (bands first), got {layout!r}"
        )
    return up


def _check_cube(a: np.ndarray, source: object, key: str | None) -> None:
    """Raise InputError unless ``a`` is a non-empty 3-D real numeric array."""
    what = f"'{key}'" if key else "the array"
    if a.ndim != 3:
        hint = ""
        if a.ndim > 3 and 1 in a.shape:
            hint = "; singleton axes are not squeezed, save the cube without them"
        raise InputError(
            f"{source}: {what} is {a.ndim}-D {a.shape}; a cube must be 3-D "
            f"(rows x cols x bands or bands x rows x cols){hint}"
        )
    if not _is_real_numeric(a.dtype):
        raise InputError(
            f"{source}: {what} {a.shape} has dtype {a.dtype}; a cube must hold "
            "real integers or floats (not bool, complex, text or objects)"
        )
    if a.size == 0:
        raise InputError(f"{source}: {what} has a zero-size axis {a.shape}; the cube is empty")


def _describe(name: str, e: _Entry) -> str:
    dims = "" if len(e.shape) == 3 else f"{len(e.shape)}-D "
    kind = e.kind if e.numeric else f"{e.kind}, not numeric"
    return f"'{name}' is {dims}{e.shape} {kind}"


def _listing(entries: dict[str, _Entry], limit: int = 20) -> str:
    items = [_describe(n, e) for n, e in entries.items()]
    more = f"; ... and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more if items else "(nothing)"


def _select(path: Path, entries: dict[str, _Entry], key: str | None) -> str:
    """Pick the variable to read: ``key``, else the single 3-D numeric array."""
    if key is not None:
        if key not in entries:
            raise InputError(f"{path}: no variable {key!r}; available: {_listing(entries)}")
        if not entries[key].numeric:
            raise InputError(
                f"{path}: {_describe(key, entries[key])}; a cube must hold real integers or floats"
            )
        return key
    cands = [n for n, e in entries.items() if e.numeric and len(e.shape) == 3]
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise InputError(
            f"{path}: no 3-D numeric array to read as a cube; found: "
            f"{_listing(entries)}; a cube must be 3-D"
        )
    listed = _listing({n: entries[n] for n in cands})
    raise InputError(
        f"{path}: several 3-D arrays could be the cube: {listed}; pass --key NAME to choose one"
    )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**30 else f"{nbytes:,} bytes"


def _check_declared(path: Path, shape: tuple, dtype: np.dtype, have: int, what: str) -> None:
    """InputError when ``shape`` x ``dtype`` needs more bytes than the file holds."""
    need = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    if need > have:
        raise InputError(
            f"{path}: {what} declares {tuple(int(s) for s in shape)} {np.dtype(dtype)} "
            f"({_gib(need)}), but the file holds only {_gib(have)}; it is truncated or "
            "its header is wrong"
        )


def _npy_header(fh, size: int) -> tuple[tuple, np.dtype]:
    """Shape and dtype from an .npy header (``fh`` left at the start of the data).

    ``size``: bytes in the file (or archive member); a header length field past it is
    refused before numpy reads (and allocates) that many bytes.
    """
    version = np.lib.format.read_magic(fh)
    start = fh.tell()
    width = 2 if version == (1, 0) else 4
    length = int.from_bytes(fh.read(width), "little")
    if start + width + length > size:
        raise ValueError(
            f"its header declares {length:,} bytes, but the file holds {size:,}; "
            "it is truncated or its header is wrong"
        )
    fh.seek(start)
    read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
        version, np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read(fh)
    return shape, dtype


def _h5_check_stored(path: Path, ds: h5py.Dataset) -> None:
    """InputError when an HDF5 dataset declares data the file does not store (sparse)."""
    if ds.shape is None or ds.size == 0:
        return
    if ds.chunks is not None:
        grid = np.ceil(np.divide(ds.shape, ds.chunks)).astype(np.int64)
        total = int(np.prod(grid, dtype=np.float64))
        stored = ds.id.get_num_chunks()
        if stored < total:
            raise InputError(
                f"{path}: dataset {ds.name!r} declares {ds.shape} {ds.dtype} "
                f"({_gib(ds.nbytes)}), but only {stored} of its {total} chunks are stored; "
                "the file is incomplete (sparse)"
            )
    elif ds.id.get_storage_size() < ds.nbytes and ds.external is None:
        raise InputError(
            f"{path}: dataset {ds.name!r} declares {ds.shape} {ds.dtype} ({_gib(ds.nbytes)}), "
            f"but only {_gib(ds.id.get_storage_size())} are stored; the file is incomplete"
        )


def _head(path: Path, n: int = 128) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


# --------------------------------------------------------------------------- layout


def detect_layout(
    shape: tuple[int, int, int], *, source: str = "array", convention: str | None = None
) -> str:
    """Decide how a 3-D array is stored: ``"HWB"`` (bands last) or ``"BHW"`` (bands first).

    Implements rules 3 and 4 of the module's layout rule (rules 1-2 live in
    :func:`read_cube`).

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
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise LayoutError(f"{source}: shape {shape} is not 3-D; a cube must be 3-D")
    a, b, c = shape
    natural = "HWB" if a == b != c else "BHW" if b == c != a else None
    if convention is not None:
        convention = _parse_layout(convention, source)
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


# --------------------------------------------------------------------------- readers


def _read_mat(path: Path, key: str | None) -> _Raw:
    head = _head(path)
    if head.startswith(_HDF5_MAGIC):
        raise InputError(
            f"{path}: plain HDF5 without a MATLAB header, not a MAT-file; "
            "rename it to .h5 to read it as HDF5"
        )
    major, _ = matfile_version(str(path))
    if major == 2:
        return _read_mat73(path, key, head)
    # scipy trusts the file: its compiled v5 reader crashes on some broken tags, and both
    # readers allocate what a header declares before reading it
    (check_mat5 if major == 1 else check_mat4)(path)
    entries = {n: _Entry(tuple(s), c, c in _MAT_NUMERIC) for n, s, c in scipy.io.whosmat(str(path))}
    name = _select(path, entries, key)
    data = scipy.io.loadmat(str(path), variable_names=[name], mat_dtype=False)[name]
    version = "5" if major == 1 else "4"
    header = head[:116].decode("latin-1").strip(" \x00") if major == 1 else ""
    return _Raw(data, "mat", name, {"mat_version": version, "header": header}, convention="HWB")


def _read_mat73(path: Path, key: str | None, head: bytes) -> _Raw:
    entries: dict[str, _Entry] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                cls = obj.attrs.get("MATLAB_class", b"")
                cls = cls.decode() if isinstance(cls, bytes) else str(cls)
                empty = bool(obj.attrs.get("MATLAB_empty", 0))
                numeric = cls in _MAT_NUMERIC and obj.dtype.kind in "iuf" and not empty
                entries[name] = _Entry(tuple(obj.shape or ())[::-1], cls or str(obj.dtype), numeric)

        f.visititems(visit)
        name = _select(path, entries, key.lstrip("/") if key else None)
        _h5_check_stored(path, f[name])
        data = f[name][()].T  # back to MATLAB order (rows x cols x bands)
    header = head[:116].decode("latin-1").strip(" \x00")
    return _Raw(data, "mat", name, {"mat_version": "7.3", "header": header}, convention="HWB")


def _read_npy(path: Path, key: str | None) -> _Raw:
    head = _head(path, 6)
    if head.startswith(b"PK"):
        raise InputError(f"{path}: is an .npz archive, not an .npy array; rename it to .npz")
    if head != b"\x93NUMPY":
        raise InputError(f"{path}: not an .npy file (no NumPy header); the file may be corrupt")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        shape, dtype = _npy_header(fh, size)
        have = size - fh.tell()
    if not dtype.hasobject:
        _check_declared(path, shape, dtype, have, "its header")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(
                f"{path}: holds pickled objects, not a numeric array; a cube "
                "must hold real integers or floats"
            ) from exc
        raise
    return _Raw(data, "npy", None, {})


def _read_npz(path: Path, key: str | None) -> _Raw:
    if not _head(path, 4).startswith(b"PK"):
        raise InputError(f"{path}: not an .npz (zip) archive; the file may be corrupt")
    entries = _npz_entries(path)  # from the headers: nothing is loaded to list them
    name = _select(path, entries, key)
    with np.load(path, allow_pickle=False) as z:
        data = z[name]
    return _Raw(data, "npz", name, {})


def _npz_entries(path: Path) -> dict[str, _Entry]:
    """The arrays of an .npz archive, from their headers; refuses one larger than stored."""
    entries: dict[str, _Entry] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with archive.open(info) as fh:
                shape, dtype = _npy_header(fh, info.file_size)
                have = info.file_size - fh.tell()
            if dtype.hasobject:
                entries[name] = _Entry((), "object", False)
                continue
            _check_declared(path, shape, dtype, have, f"array {name!r}")
            entries[name] = _Entry(tuple(shape), str(dtype), _is_real_numeric(dtype))
    return entries


def _read_h5(path: Path, key: str | None) -> _Raw:
    head = _head(path)
    if head.startswith(_MAT73_MAGIC):
        return _read_mat73(path, key, head)
    entries: dict[str, _Entry] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                entries[name] = _Entry(
                    tuple(obj.shape or ()), str(obj.dtype), obj.dtype.kind in "iuf"
                )

        f.visititems(visit)
        name = _select(path, entries, key.lstrip("/") if key else None)
        _h5_check_stored(path, f[name])
        data = f[name][()]
    return _Raw(data, "h5", name, {})


def _read_tiff(path: Path, key: str | None) -> _Raw:
    log = logging.getLogger("tifffile")  # its warnings and errors on bad files reach stderr
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        return _read_tiff_quiet(path)
    finally:
        log.setLevel(level)


def _read_tiff_quiet(path: Path) -> _Raw:
    check_tiff_chain(path)  # a looping chain of directories kept tifffile busy for minutes
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if all(page.compression == 1 for page in series.pages if page is not None):
            # uncompressed: the pixels must fit in the file before anything is allocated
            _check_declared(path, series.shape, series.dtype, path.stat().st_size, "the TIFF")
        data = series.asarray()
        axes = series.axes
        page = tif.pages.first
        meta = {
            "axes": axes,
            "series": len(tif.series),
            "pages": len(tif.pages),
            "photometric": page.photometric.name,
            "planarconfig": tifffile.PLANARCONFIG(page.planarconfig).name,
            **form_of(page).as_metadata(),
            "shaped_metadata": tif.shaped_metadata,
            "geotiff_tags": [
                (tag.code, int(tag.dtype), tag.count, tag.value)
                for tag in page.tags.values()
                if tag.code in GEOTIFF_TAGS
            ],
        }
    layout = None
    if len(axes) == 3 and axes[1:] == "YX":
        layout = "BHW"
    elif len(axes) == 3 and axes[:2] == "YX":
        layout = "HWB"
    return _Raw(data, "tiff", None, meta, layout=layout)


def _read_envi(path: Path, key: str | None) -> _Raw:
    img = envi.open(str(path))
    interleave = str(img.metadata.get("interleave", "bsq")).lower()
    if interleave not in _ENVI_INTERLEAVE:
        raise InputError(
            f"{path}: unknown ENVI interleave {interleave!r}; expected bsq, bil or bip"
        )
    data_file = Path(img.filename)
    _check_regular(data_file, owner=path)
    shape = (img.nrows, img.ncols, img.nbands)
    have = data_file.stat().st_size - int(img.offset)
    _check_declared(path, shape, np.dtype(img.dtype), have, "the header")
    mm = img.open_memmap(interleave="source")
    data = np.array(mm)
    del mm
    meta = dict(img.metadata)
    meta["data file"] = str(img.filename)
    wkt = meta.get("coordinate system string")
    if isinstance(wkt, list):  # spectral splits every {...} value at commas; WKT is one string
        meta["coordinate system string"] = ",".join(wkt)
    return _Raw(data, "envi", None, meta, layout=_ENVI_INTERLEAVE[interleave])


def _png_band(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            a = np.asarray(im)
    except Exception as exc:
        raise InputError(f"{path}: cannot read PNG ({_one_line(exc)})") from exc
    if mode == "L" or mode.startswith("I;16"):
        return _native(a)
    if mode == "I" and a.min() >= 0 and a.max() <= 65535:
        return a.astype(np.uint16)
    if mode in ("RGB", "RGBA", "LA"):
        colour = a[..., :1] if mode == "LA" else a[..., :3]
        if not (colour == colour[..., :1]).all():
            raise InputError(
                f"{path}: {mode} PNG whose colour channels differ; a band "
                "PNG must be grayscale (or RGB with identical channels)"
            )
        return np.ascontiguousarray(colour[..., 0])
    raise InputError(
        f"{path}: PNG mode {mode!r} is not supported; a band must be 8- or 16-bit grayscale"
    )


def _read_png(folder: Path, key: str | None) -> _Raw:
    names = sorted(os.listdir(folder))
    pngs = sorted(
        (
            n
            for n in names
            if n.lower().endswith(".png") and not n.startswith(".") and (folder / n).is_file()
        ),
        key=_natural_key,
    )
    ignored = [n for n in names if n not in pngs]
    cube = None
    for i, name in enumerate(pngs):
        band = _png_band(folder / name)
        if cube is None:
            cube = np.empty((len(pngs), *band.shape), band.dtype)
        elif band.shape != cube.shape[1:] or band.dtype != cube.dtype:
            raise InputError(
                f"{folder / name}: band is {band.shape} {band.dtype}, but {pngs[0]} is "
                f"{cube.shape[1:]} {cube.dtype}; all band PNGs must have the same size "
                "and bit depth"
            )
        cube[i] = band
    return _Raw(cube, "png", None, {"files": pngs, "ignored": ignored}, layout="BHW")


_READERS: dict[str, Callable[[Path, str | None], _Raw]] = {
    "mat": _read_mat,
    "npy": _read_npy,
    "npz": _read_npz,
    "h5": _read_h5,
    "tiff": _read_tiff,
    "envi": _read_envi,
    "png": _read_png,
}


def is_png_cube_folder(path: str | os.PathLike) -> bool:
    """True for a directory holding at least one .png and no file with a cube extension."""
    p = Path(path)
    try:
        files = [f for f in p.iterdir() if f.is_file()] if p.is_dir() else []
    except OSError:
        return False
    return any(f.suffix.lower() == ".png" for f in files) and not any(
        f.suffix.lower() in FORMATS for f in files
    )


def _is_cube(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in FORMATS) or is_png_cube_folder(path)


def find_cubes(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Cube files and PNG-band folders in ``folder``, sorted.

    Names starting with ``.`` are skipped; a PNG-band folder is a cube (not searched
    further). ``recursive`` searches sub-folders too (following links). An empty list
    when there is none; :class:`InputError` when ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of cubes")
    if not recursive:
        return sorted(p for p in root.iterdir() if not p.name.startswith(".") and _is_cube(p))
    found = []
    for here, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(here)
        if base != root and is_png_cube_folder(base):
            found.append(base)
            dirs.clear()
            continue
        found += [base / f for f in files if not f.startswith(".") and _is_cube(base / f)]
    return sorted(found)


def expand_inputs(
    items: Iterable[str | os.PathLike], *, recursive: bool = False, skip_suffix: str | None = None
) -> list[Path]:
    """Input paths with every folder of cubes replaced by the cubes it holds.

    A file or a PNG-band folder stands for itself (missing ones too: reading them says
    what is wrong); another folder gives :func:`find_cubes` and must hold at least one.
    ``skip_suffix`` (``"_denoised"``) leaves out, from folders only, the cubes whose stem
    ends with it: what an earlier run wrote there is not picked up again.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir() and not is_png_cube_folder(path):
            found = find_cubes(path, recursive=recursive)
            if skip_suffix:
                found = [p for p in found if not _stem(p).endswith(skip_suffix)]
            if not found:
                raise InputError(f"{path}: folder holds no cube files ({', '.join(FORMATS)})")
            paths.extend(found)
        else:
            paths.append(path)
    return paths


def _stem(path: Path) -> str:
    return path.stem if path.suffix.lower() in FORMATS else path.name


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file; of a folder (a PNG-band cube): of each file's name and bytes.

    A folder's files are taken in sorted order, each as ``name + NUL + content``.
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Hex sha256 of an array's bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _check_regular(p: Path, owner: Path | None = None) -> None:
    """InputError unless ``p`` (after links) is a regular file: a FIFO or device could hang.

    ``owner`` is the file that names ``p`` (an ENVI header naming its data file).
    """
    where = f"{owner}: its data file {p}" if owner else f"{p}:"
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise InputError(f"{where} cannot be opened ({_one_line(exc)})") from exc
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{where} is {_kind(mode)}, not a regular file; ras2s reads cubes only from "
            "regular files"
        )


def check_input(path: str | os.PathLike) -> str:
    """The format of an input cube path, or :class:`InputError` naming what is wrong.

    Refused: a missing path, a dangling link, a FIFO, socket or device (reading one
    could hang), an unknown extension, an unreadable file. Cheap (nothing is parsed):
    used to refuse bad inputs before any work.
    """
    return _input_format(Path(path))


def _input_format(p: Path) -> str:
    if not p.exists():
        if p.is_symlink():
            raise InputError(f"{p}: is a dangling symbolic link (its target does not exist)")
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputError(f"{p}: permission denied, cannot read the folder")
        if is_png_cube_folder(p):
            return "png"
        hint = ""
        with contextlib.suppress(OSError):
            subs = [d for d in p.iterdir() if d.is_dir() and is_png_cube_folder(d)]
            if len(subs) == 1:
                hint = f" (did you mean {subs[0]}?)"
        raise InputError(
            f"{p}: is a folder but not a PNG cube folder (one .png per band and "
            f"no other cube files){hint}"
        )
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        hint = ""
        if p.suffix.lower() == ".png":
            hint = "; a PNG cube is a folder of per-band .png files"
        elif p.with_suffix(".hdr").is_file():
            hint = f"; for ENVI pass the header {p.with_suffix('.hdr').name}"
        raise InputError(f"{p}: unknown extension {p.suffix!r}; supported: {_SUPPORTED}{hint}")
    _check_regular(p)
    try:
        _head(p, 1)
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied, cannot read the file") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot open the file ({_one_line(exc)})") from exc
    return fmt


def read_cube(
    path: str | os.PathLike, *, key: str | None = None, layout: str | None = None
) -> CubeFile:
    """Read a hyperspectral cube from a file or a PNG folder, bands first.

    Parameters
    ----------
    path : str or path-like
        A ``.mat``, ``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.tif``/``.tiff`` or ENVI
        ``.hdr`` file, or a folder of per-band PNGs.
    key : str, optional
        Variable / dataset inside a container (.mat, .npz, .h5; HDF5 keys are full
        paths such as ``"group/cube"``). Without it the single 3-D numeric array is
        taken. Ignored by the other formats.
    layout : {"HWB", "BHW"}, optional
        How the array is stored in the file (case-insensitive); overrides every rule.

    Returns
    -------
    CubeFile
        ``data`` is ``(bands, H, W)`` in the file's dtype.

    Raises
    ------
    InputError
        Missing, unreadable, corrupt, non-cube or ambiguous input (one-line message
        naming the file). :class:`LayoutError` (a subclass) when the layout is ambiguous.
    """
    p = Path(path)
    override = _parse_layout(layout, p)
    fmt = _input_format(p)
    try:
        raw = _READERS[fmt](p, key)
    except Ras2sError:
        raise
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied ({_one_line(exc)})") from exc
    except Exception as exc:
        raise InputError(
            f"{p}: cannot read as {fmt} ({_one_line(exc)}); the file may be corrupt or truncated"
        ) from exc
    _check_cube(raw.data, p, raw.key)
    stored = (
        override
        or raw.layout
        or detect_layout(raw.data.shape, source=str(p), convention=raw.convention)
    )
    data = _native(_to_bhw(raw.data, stored))
    return CubeFile(data, p, raw.format, raw.key, stored, raw.metadata)


# --------------------------------------------------------------------------- writers


def _write_mat(tmp: Path, data: np.ndarray, key: str, layout: str, like: CubeFile | None) -> None:
    if data.nbytes >= _MAT73_THRESHOLD:
        _write_mat73(tmp, data, key)
        return
    with open(tmp, "wb") as fh:
        scipy.io.savemat(
            fh, {key: data.transpose(1, 2, 0)}, do_compression=False, format="5", oned_as="column"
        )


def _mat_class(dtype: np.dtype) -> str:
    return {"float64": "double", "float32": "single"}.get(str(dtype), str(dtype))


def _write_mat73(tmp: Path, data: np.ndarray, key: str) -> None:
    cls = _mat_class(data.dtype)
    b, h, w = data.shape
    with h5py.File(tmp, "w", userblock_size=512) as f:
        # HDF5 stores MATLAB's column-major rows x cols x bands as (bands, cols, rows)
        ds = f.create_dataset(key, shape=(b, w, h), dtype=data.dtype)
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        for i in range(b):
            ds[i] = data[i].T
    text = (
        f"MATLAB 7.3 MAT-file, Platform: ras2s, Created on: "
        f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 ."
    )
    header = text.encode("ascii").ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    with open(tmp, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))


def _write_npy(tmp: Path, data: np.ndarray, key: str, layout: str, like: CubeFile | None) -> None:
    with open(tmp, "wb") as fh:
        np.save(fh, _from_bhw(data, layout), allow_pickle=False)


def _write_npz(tmp: Path, data: np.ndarray, key: str, layout: str, like: CubeFile | None) -> None:
    with open(tmp, "wb") as fh:
        np.savez(fh, **{key: _from_bhw(data, layout)})


def _write_h5(tmp: Path, data: np.ndarray, key: str, layout: str, like: CubeFile | None) -> None:
    with h5py.File(tmp, "w") as f:
        f.create_dataset(key, data=np.ascontiguousarray(_from_bhw(data, layout)))


def _write_tiff(
    tmp: Path,
    data: np.ndarray,
    key: str,
    layout: str,
    like: CubeFile | None,
    *,
    cog: bool = False,
) -> None:
    """One page holding every band (as GDAL reads a multi-band raster).

    ``HWB`` is written pixel-interleaved (planar config contig), ``BHW`` band-sequential
    (planar config separate). The GeoTIFF and GDAL tags of a TIFF ``like`` of the same
    height and width are copied, and so is its form (tiling or rows per strip,
    compression, predictor: :mod:`ras2s.tiffform`). ``cog`` writes a Cloud-Optimized
    GeoTIFF instead (:func:`ras2s.tiffform.write_cog`).
    """
    big = data.nbytes > 2**32 - 2**25
    extratags = []
    form = None
    if like is not None and like.format == "tiff":
        form = TiffForm.from_metadata(like.metadata)
        if like.data.shape[1:] == data.shape[1:]:
            extratags = [
                (code, dtype, count, value, True)
                for code, dtype, count, value in like.metadata.get("geotiff_tags", [])
            ]
    if cog:
        write_cog(tmp, data, layout=layout, extratags=extratags, bigtiff=big)
    else:
        write_tiff(tmp, data, layout=layout, form=form, extratags=extratags, bigtiff=big)


def _write_envi(tmp: Path, data: np.ndarray, key: str, layout: str, like: CubeFile | None) -> None:
    meta: dict = {}
    if like is not None and like.format == "envi":
        meta = {k: v for k, v in like.metadata.items() if k not in _ENVI_STRUCTURAL}
        for k in _ENVI_PER_BAND & meta.keys():
            if not isinstance(meta[k], list) or len(meta[k]) != data.shape[0]:
                del meta[k]
        wkt = meta.get("coordinate system string")
        if isinstance(wkt, str) and not wkt.startswith("{"):
            # spectral writes a list joined by " , " with its commas replaced: keep the WKT
            meta["coordinate system string"] = "{" + wkt + "}"
    interleave = {v: k for k, v in _ENVI_INTERLEAVE.items()}[layout]
    envi.save_image(
        str(tmp),
        data.transpose(1, 2, 0),
        dtype=data.dtype,
        interleave=interleave,
        metadata=meta,
        force=True,
        ext=".img",
    )


def _write_png(
    folder: Path, data: np.ndarray, key: str, layout: str, like: CubeFile | None
) -> None:
    names = (
        list(like.metadata.get("files", [])) if like is not None and like.format == "png" else []
    )
    if len(names) != data.shape[0]:
        width = max(3, len(str(data.shape[0])))
        names = [f"band_{i + 1:0{width}d}.png" for i in range(data.shape[0])]
    for name, band in zip(names, data, strict=True):
        Image.fromarray(np.ascontiguousarray(band)).save(folder / name, format="PNG")


_WRITERS: dict[str, Callable[[Path, np.ndarray, str, str, CubeFile | None], None]] = {
    "mat": _write_mat,
    "npy": _write_npy,
    "npz": _write_npz,
    "h5": _write_h5,
    "tiff": _write_tiff,
    "envi": _write_envi,
    "png": _write_png,
}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: errno -> what it means to someone whose write stopped half way.
_NO_ROOM = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file-size limit (ulimit -f) was reached",
    errno.EDQUOT: "the disk quota is exceeded",
}
# h5py and some C writers report errno only in their message text
_NO_ROOM_TEXT = {
    "No space left on device": errno.ENOSPC,
    "File too large": errno.EFBIG,
    "Disk quota exceeded": errno.EDQUOT,
    "errno = 28": errno.ENOSPC,
    "errno = 27": errno.EFBIG,
    "errno = 122": errno.EDQUOT,
}


def _no_room(exc: BaseException) -> int | None:
    """ENOSPC, EFBIG or EDQUOT when ``exc`` (or what caused it) is a full disk or limit."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            return exc.errno
        text = str(exc)
        for needle, code in _NO_ROOM_TEXT.items():
            if needle in text:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def _largest(paths: Iterable[Path]) -> int:
    """Bytes of the largest regular file among ``paths`` (folders searched), 0 if none."""
    sizes = [0]
    for p in paths:
        with contextlib.suppress(OSError):
            if p.is_dir():
                sizes += [f.stat().st_size for f in p.rglob("*") if f.is_file()]
            else:
                sizes.append(p.stat().st_size)
    return max(sizes)


def _out_of_room(exc: BaseException, folder: Path, written: int) -> int | None:
    """Why a write failed for lack of room: from the error, else from the limits.

    Some writers report a short write without its errno (numpy: "76800 requested and
    16352 written"). Then, for an ``OSError``, the file that was being written
    (``written`` bytes) is compared with the file-size limit, and the folder's free
    space with nothing.
    """
    code = _no_room(exc)
    if code is not None or not _in_chain(exc, OSError):
        return code
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and written >= soft:
            return errno.EFBIG
    with contextlib.suppress(OSError):
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < 2**20:
            return errno.ENOSPC
    return None


def _in_chain(exc: BaseException | None, kind: type) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _fail(final: Path, exc: BaseException, written: int = 0) -> None:
    """Re-raise ``exc`` as a one-line OutputError (Ras2sError and interrupts unchanged).

    A full disk, a file-size limit (``RLIMIT_FSIZE``, ``ulimit -f``) or a quota says so
    in plain words: the temporary file is gone and ``final`` is as it was. ``written``:
    the size the temporary had reached (to recognise a short write at the limit).
    """
    if isinstance(exc, Ras2sError) or not isinstance(exc, Exception):
        raise exc
    code = _out_of_room(exc, final.parent, written)
    if code is not None:
        raise OutputError(
            f"{final}: writing failed ({os.strerror(code)}: {_NO_ROOM[code]}); the partial "
            "file was removed, nothing was written and an existing file is unchanged"
        ) from exc
    raise OutputError(f"{final}: writing failed ({_one_line(exc)}); nothing was written") from exc


def _fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to the disk: its data, or its entries."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder: nothing to flush there
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` (recursively), then each folder's entries."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


def _claim(tmp: Path, final: Path) -> None:
    """Publish ``tmp`` as ``final`` only if ``final`` does not exist, atomically.

    ``os.link`` fails with EEXIST when ``final`` appeared meanwhile, so of two processes
    racing for one output exactly one wins; the other gets :class:`OutputError`. On a
    file system without hard links, falls back to a check and a rename (not atomic).
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise OutputError(
            f"{final}: appeared while this output was being written (another ras2s run?); "
            "it was left as it is; pass --force to overwrite it"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(final):
            raise OutputError(
                f"{final}: appeared while this output was being written; "
                "pass --force to overwrite it"
            ) from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


def _atomic_file(
    final: Path, write: Callable[[Path], None], companions: tuple = (), *, force: bool = True
) -> None:
    """Write through a temporary file beside ``final``; flush it; publish it; flush the folder.

    ``force=False`` publishes with :func:`_claim` (never over a file that appeared
    meanwhile); ``force=True`` with ``os.replace`` (atomic: readers see the old file or
    the new one). ``companions`` are suffixes of files written beside the temporary
    (ENVI's ``.img``), published first so the header never names missing data.
    """
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=".ras2s-", suffix=final.suffix)
    os.close(fd)
    tmp = Path(name)
    tmps = [tmp.with_suffix(s) for s in companions] + [tmp]
    finals = [final.with_suffix(s) for s in companions] + [final]
    published: list[Path] = []
    try:
        write(tmp)
        for t in tmps:
            os.chmod(t, 0o666 & ~_umask())
            _fsync_path(t)  # the data is on the disk before any name points at it
        for t, f in zip(tmps, finals, strict=True):
            if force:
                os.replace(t, f)
            else:
                _claim(t, f)
                published.append(f)
        _fsync_path(final.parent)  # the new name itself survives a power loss
    except BaseException as exc:
        written = _largest(tmps)
        for t in tmps:
            with contextlib.suppress(OSError):
                t.unlink()
        if len(published) < len(finals):  # no-clobber, half published: take ours back
            for f in published:
                with contextlib.suppress(OSError):
                    f.unlink()
        _fail(final, exc, written)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, force: bool = True) -> Iterator[Path]:
    """A temporary file beside ``final``, renamed onto it when the block succeeds.

    For writers that fill a file over time (a stream, several blocks): on any failure
    the temporary file is removed, ``final`` is left as it was, and the error is raised
    as a one-line :class:`OutputError` (ras2s errors and interrupts unchanged). The file
    is flushed to the disk before the rename and its folder after it, so a crash leaves
    the old file or the whole new one. ``force=False`` refuses to replace a ``final``
    that exists by then (another process won the race).

    Examples
    --------
    >>> with atomic_path("out.bin") as tmp:  # doctest: +SKIP
    ...     tmp.write_bytes(b"...")
    """
    final = Path(final)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=".ras2s-", suffix=final.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync_path(tmp)
        if force:
            os.replace(tmp, final)
        else:
            _claim(tmp, final)
        _fsync_path(final.parent)
    except BaseException as exc:
        written = _largest([tmp])
        with contextlib.suppress(OSError):
            tmp.unlink()
        _fail(final, exc, written)


def write_atomically(
    final: str | os.PathLike,
    write: Callable[[Path], object],
    *,
    folder: bool = False,
    force: bool = True,
) -> Path:
    """Call ``write(tmp)`` for a temporary file (or folder) beside ``final``, then rename.

    The temporary gets a normal mode and is flushed to the disk (``fsync``) before the
    rename, and the parent folder after it: a crash or power loss leaves the old
    ``final`` or the complete new one, never a partial file. On any failure the
    temporary is removed, ``final`` is left as it was, and the error is raised as a
    one-line :class:`OutputError` (a full disk or file-size limit says so). With
    ``folder=True``, ``write`` fills a temporary folder that replaces ``final`` whole.
    ``force=False`` never replaces a ``final`` that exists when the write ends.
    """
    final = Path(final)
    if folder:
        _atomic_dir(final, write, force=force)
    else:
        _atomic_file(final, write, force=force)
    return final


def write_text_atomically(final: str | os.PathLike, text: str, *, force: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``final`` through :func:`write_atomically`."""
    return write_atomically(final, lambda tmp: tmp.write_text(text, encoding="utf-8"), force=force)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the call is not available (then the caller renames in two steps).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange):
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            return False
        raise OSError(code, os.strerror(code), str(b))
    return True


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _atomic_dir(final: Path, write: Callable[[Path], None], *, force: bool = True) -> None:
    """A PNG-band folder: fill a temporary folder, flush it, then put it in place whole.

    Over an existing folder (``force``) the two are swapped atomically where the kernel
    can (``RENAME_EXCHANGE``); elsewhere the old folder is moved aside first. Without
    ``force`` the rename fails if ``final`` appeared meanwhile with content.
    """
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".ras2s-"))
    backup = tmp.with_name(tmp.name + "-old")
    swapped = False
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        _fsync_tree(tmp)
        if os.path.lexists(final) and not force:
            raise OutputError(
                f"{final}: appeared while this output was being written (another ras2s run?); "
                "it was left as it is; pass --force to overwrite it"
            )
        if final.is_dir() and not final.is_symlink():
            swapped = _exchange(tmp, final)
            if not swapped:
                os.replace(final, backup)
        if not swapped:
            try:
                os.rename(tmp, final)
            except OSError as exc:  # a folder with content appeared meanwhile
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
                raise OutputError(
                    f"{final}: appeared while this output was being written "
                    "(another ras2s run?); it was left as it is"
                ) from None
        _fsync_path(final.parent)
    except BaseException as exc:
        if backup.exists() and not final.exists():
            os.replace(backup, final)
        written = _largest([tmp])
        shutil.rmtree(tmp, ignore_errors=True)  # ours, or the old folder after a swap
        _fail(final, exc, written)
    old = tmp if swapped else backup  # after a swap the old folder sits at tmp
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():
        old.unlink()


class FolderLock:
    """An exclusive advisory lock (``flock``) on a folder, for one process at a time.

    Locks the folder itself, so no lock file is left behind. ``wait=False`` refuses at
    once with :class:`OutputError` when another process holds it (``what`` says what
    the lock guards, for the message); ``wait=True`` blocks until it is free. Released by
    :meth:`release`, at the end of a ``with`` block, or when the process ends (even
    killed). Where ``fcntl`` is missing (Windows) it locks nothing.

    Examples
    --------
    >>> with FolderLock("results/", what="ras2s evaluate"):  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, folder: str | os.PathLike, *, wait: bool = True, what: str = "") -> None:
        self.folder = Path(folder)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux or macOS
            return
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{self.folder}: another process is writing here ({what or 'ras2s'}); "
                "wait for it to finish or use another output folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the next process in (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _output_format(p: Path) -> str:
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is not None:
        return fmt
    if p.suffix == "" or (p.is_dir() and not p.is_symlink()):
        return "png"
    raise OutputError(f"{p}: unknown output extension {p.suffix!r}; supported: {_SUPPORTED}")


def _check_dtype(p: Path, fmt: str, dtype: np.dtype) -> None:
    """OutputError when the output format cannot hold ``dtype`` (before any work)."""
    dtype = np.dtype(dtype)
    if not _is_real_numeric(dtype):
        raise OutputError(f"{p}: cannot write a cube of dtype {dtype}; it must be real numbers")
    others = "pick another format (.tif, .npy, .h5)"
    if fmt == "png" and dtype not in (np.uint8, np.uint16):
        raise OutputError(
            f"{p}: PNG holds only uint8 or uint16 bands, this cube is "
            f"{dtype}; pick another format (.tif, .npy, .mat, .h5, .hdr)"
        )
    if fmt == "mat" and _mat_class(dtype) not in _MAT_NUMERIC:
        raise OutputError(f"{p}: MATLAB has no {dtype} type; {others}")
    if fmt == "envi" and dtype.char not in envi.dtype_to_envi:
        raise OutputError(f"{p}: ENVI has no {dtype} type; {others}")


def input_files(path: str | os.PathLike) -> list[Path]:
    """The real paths an input cube occupies; outputs must never land on (or in) them.

    The file itself, an ENVI header and its data file, or a PNG-band folder (which
    covers its contents).
    """
    p = Path(os.path.realpath(path))
    found = [p]
    if p.suffix.lower() == ".hdr":
        stems = [p.with_suffix(s) for s in ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip")]
        found += [c for s in stems for c in (s, s.with_suffix(s.suffix.upper())) if c.exists()]
    return found


def _overlaps(target: Path, inputs: Iterable[str | os.PathLike]) -> Path | None:
    """The input that ``target`` would overwrite (itself, inside it, or holding it)."""
    real = Path(os.path.realpath(target))
    for source in inputs:
        for occupied in input_files(source):
            if real == occupied or real.is_relative_to(occupied) or occupied.is_relative_to(real):
                return Path(source)
    return None


def check_replaceable(
    path: str | os.PathLike,
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    folder: bool = False,
) -> None:
    """Refuse, before any work, an output path that must not or cannot be written.

    Refused always: a path that is one of ``inputs`` (or inside an input PNG-band folder,
    or an ENVI input's data file), a symbolic link (dangling or not), a FIFO, socket or
    device, a missing or read-only parent folder. Refused without ``force``: any existing
    path. With ``force`` only a regular file (``folder=False``) or a folder holding
    nothing but band PNGs (``folder=True``) is ever replaced.

    Raises
    ------
    OutputError
        Naming the path and why.
    """
    p = Path(path)
    source = _overlaps(p, inputs)
    if source is not None:
        raise OutputError(
            f"{p}: would overwrite the input {source}; an input is never replaced, even "
            "with --force (choose another output name)"
        )
    parent = p.parent
    if not parent.is_dir():
        raise OutputError(f"{p}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: output folder {parent} is not writable")
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return
    _check_mode(p, mode, folder)
    if not force:
        raise OutputError(f"{p}: already exists; pass --force to overwrite it")


def _check_mode(p: Path, mode: int, folder: bool) -> None:
    """OutputError unless an existing ``p`` is something --force may replace."""
    if folder and stat.S_ISDIR(mode):
        others = sorted(
            f.name for f in p.iterdir() if f.suffix.lower() != ".png" or not _plain_file(f)
        )
        if others:
            raise OutputError(
                f"{p}: holds {others[0]!r} ({len(others)} in all), not only band PNGs; "
                "refusing to replace the folder"
            )
        return
    if not folder and stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise OutputError(f"{p}: is a folder; expected a file name")
    if stat.S_ISREG(mode):
        raise OutputError(
            f"{p}: is a file with no extension; refusing to replace it by a PNG-band folder "
            "(give the output an extension such as .npy or .tif)"
        )
    what = "a regular file" if not folder else "a PNG-band folder"
    raise OutputError(f"{p}: is {_kind(mode)}; ras2s replaces only {what}")


def _plain_file(p: Path) -> bool:
    return stat.S_ISREG(os.lstat(p).st_mode)


def check_output(
    path: str | os.PathLike,
    dtype: np.dtype | type | None = None,
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> str:
    """Refuse, before any work, a cube output :func:`write_cube` would refuse; its format.

    Checks the extension, that the format can hold ``dtype`` (when given), and every
    file the output occupies (an ENVI ``.hdr`` and its ``.img``) with
    :func:`check_replaceable`.
    """
    p = Path(path)
    fmt = _output_format(p)
    if dtype is not None:
        _check_dtype(p, fmt, dtype)
    for target in output_files(p):
        check_replaceable(target, force=force, inputs=inputs, folder=fmt == "png")
    return fmt


def output_files(path: str | os.PathLike) -> list[Path]:
    """The paths a cube output occupies: ``path``, and ``.img`` beside an ENVI ``.hdr``."""
    p = Path(path)
    return [p, p.with_suffix(".img")] if FORMATS.get(p.suffix.lower()) == "envi" else [p]


def check_suffix(suffix: str) -> str:
    """``suffix`` if it can end a file name in the same folder, else :class:`InputError`."""
    seps = {"/", os.sep, os.altsep or "/", "\0"}
    if not suffix or any(c in suffix for c in seps) or suffix.strip(".") == "":
        raise InputError(
            f"output suffix {suffix!r} must be a non-empty part of a file name (no slash): "
            "the output is written beside its input as <stem><suffix><ext>"
        )
    return suffix


def write_cube(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    like: CubeFile | None = None,
    key: str | None = None,
    layout: str | None = None,
    force: bool = False,
    cog: bool = False,
) -> Path:
    """Write a bands-first cube in the format given by the output path, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file; its extension picks the format (see :data:`FORMATS`). A path with
        no extension (or an existing folder) is written as a folder of per-band PNGs.
    data : numpy.ndarray
        ``(bands, H, W)``, any real numeric dtype (PNG: uint8 or uint16 only). Written
        with its dtype unchanged.
    like : CubeFile, optional
        The input this cube came from: its key, layout (same format only), ENVI header
        and interleave, and PNG file names are reused; a TIFF keeps its GeoTIFF tags,
        planar configuration, tiling (or rows per strip), compression and predictor
        (a lossy or unavailable compression becomes deflate).
    key : str, optional
        Variable / dataset name (.mat, .npz, .h5). Default: ``like.key`` when ``like``
        has the output's format, else ``"data"``.
    layout : {"HWB", "BHW"}, optional
        Stored layout for .npy, .npz and .h5 (default: ``like.layout`` when ``like`` has
        the same format, else BHW). The other formats follow their convention: .mat
        HWB; TIFF bands first (or ``like``'s layout); ENVI ``like``'s interleave or bsq.
    force : bool
        Overwrite an existing output (atomically: readers see the old file or the new
        one). Without it, an output that appears while this one is written (another
        process racing for the same name) is left alone and :class:`OutputError` raised.
    cog : bool
        TIFF output only: write a Cloud-Optimized GeoTIFF (tiled 256 or 512, deflate,
        internal overviews, IFDs before data; :func:`ras2s.tiffform.write_cog`).

    Returns
    -------
    pathlib.Path
        The written file (ENVI: the ``.hdr``; its data file is ``.img`` beside it).

    Raises
    ------
    OutputError
        Unknown extension, bad data, existing output without ``force``, missing or
        read-only folder, or a failure while writing (nothing is left behind then).
    """
    p = Path(path)
    fmt = _output_format(p)
    data = np.asarray(data)
    if data.ndim != 3 or data.size == 0 or not _is_real_numeric(data.dtype):
        raise OutputError(
            f"{p}: cannot write an array of shape {data.shape} {data.dtype}; "
            "expected a non-empty real numeric (bands, H, W) cube"
        )
    if cog and fmt != "tiff":
        raise OutputError(f"{p}: a Cloud-Optimized GeoTIFF needs a .tif or .tiff output")
    check_output(p, data.dtype, force=force)
    same = like is not None and like.format == fmt
    if fmt in ("npy", "npz", "h5"):
        stored = _parse_layout(layout, p) or (like.layout if same else "BHW")
    elif fmt == "tiff":
        stored = "HWB" if same and like.layout == "HWB" else "BHW"
    elif fmt == "envi":
        stored = like.layout if same else "BHW"
    else:
        stored = "HWB" if fmt == "mat" else "BHW"
    name = key or (like.key if same and like.key else None) or "data"
    if fmt == "mat" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name):
        raise OutputError(f"{p}: {name!r} is not a valid MATLAB variable name; pass --key")

    def write(tmp: Path) -> None:
        if fmt == "tiff":
            _write_tiff(tmp, data, name, stored, like, cog=cog)
        else:
            _WRITERS[fmt](tmp, data, name, stored, like)

    if fmt == "png":
        _atomic_dir(p, write, force=force)
    else:
        _atomic_file(p, write, (".img",) if fmt == "envi" else (), force=force)
    return p


def default_output_path(input_path: str | os.PathLike, suffix: str = "_denoised") -> Path:
    """The default output beside the input: ``<stem><suffix><ext>``.

    A PNG folder gives ``<folder><suffix>/``; an ENVI ``x.hdr`` gives ``x<suffix>.hdr``.
    """
    check_suffix(suffix)
    p = Path(input_path)
    if p.is_dir() or p.suffix == "":
        return p.with_name(p.name + suffix)
    return p.with_name(p.stem + suffix + p.suffix)


def cube_nodata(cube: CubeFile) -> float | None:
    """The nodata value a file declares: GDAL_NODATA (TIFF) or ENVI ``data ignore value``.

    Returns None when the file declares none (or an unparsable one).
    """
    text: object = None
    if cube.format == "tiff":
        for code, _dtype, _count, value in cube.metadata.get("geotiff_tags", []):
            if code == 42113:
                text = value
    elif cube.format == "envi":
        text = cube.metadata.get("data ignore value")
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        return None if text is None else float(str(text).strip().strip("\x00"))
    except ValueError:
        return None


def bad_bands(cube: CubeFile) -> list[int]:
    """0-based indices of the bands an ENVI header marks bad (``bbl`` = 0); else []."""
    bbl = cube.metadata.get("bbl") if cube.format == "envi" else None
    if not isinstance(bbl, list) or len(bbl) != cube.data.shape[0]:
        return []
    out = []
    for i, flag in enumerate(bbl):
        try:
            if float(flag) == 0:
                out.append(i)
        except (TypeError, ValueError):
            continue
    return out
