"""ENVI: a text header ``.hdr`` and a raw data file, read and written window by window.

The header's ``interleave`` says the layout: bsq = BHW, bip = HWB, bil = rows x bands x
cols (reported as ``HBW``). An output keeps its ENVI input's header (wavelength, fwhm,
band names, bbl, map info, ``data ignore value``, ...) and interleave; the data file is
``.img`` beside the header, in native byte order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from spectral.io import envi

from ras2s.errors import InputError

from .base import Opened
from .checks import check_declared, check_regular
from .layout import from_bhw, stored_key, stored_shape
from .raw import RawArray, raw_file

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


#: ENVI header field -> the zarr attribute that carries it (ras2s.io.zarr)
_FROM_ZARR = {
    "wavelength units": "wavelength_units",
    "wavelength": "wavelength",
    "fwhm": "fwhm",
    "band names": "band_names",
    "bbl": "bbl",
    "data ignore value": "nodata",
}


def _per_band(value: object, bands: int) -> bool:
    return isinstance(value, list) and len(value) == bands


def open_envi(path: Path, key: str | None, max_bytes: int | None) -> Opened:
    """An ENVI header and its data file, windowed."""
    img = envi.open(str(path))
    interleave = str(img.metadata.get("interleave", "bsq")).lower()
    if interleave not in _ENVI_INTERLEAVE:
        raise InputError(
            f"{path}: unknown ENVI interleave {interleave!r}; expected bsq, bil or bip"
        )
    data_file = Path(img.filename)
    check_regular(data_file, owner=path)
    layout = _ENVI_INTERLEAVE[interleave]
    stored = stored_shape((img.nbands, img.nrows, img.ncols), layout)
    have = data_file.stat().st_size - int(img.offset)
    shape = (img.nrows, img.ncols, img.nbands)
    check_declared(path, shape, np.dtype(img.dtype), have, "the header")
    array = RawArray(data_file, int(img.offset), stored, np.dtype(img.dtype))
    meta = dict(img.metadata)
    meta["data file"] = str(img.filename)
    wkt = meta.get("coordinate system string")
    if isinstance(wkt, list):  # spectral splits every {...} value at commas; WKT is one string
        meta["coordinate system string"] = ",".join(wkt)
    del img
    return Opened(array, "envi", None, meta, layout=layout)


def header(plan) -> dict:
    """The header of an output: the input's (ENVI, or a zarr's attributes), then the structure.

    Built in the order spectral's ``save_image`` builds it, so that the header reads
    as before: kept fields first, then offset, size, data type, interleave, byte order.
    """
    like = plan.like
    bands, rows, cols = plan.shape
    meta: dict = {}
    if like is not None and like.format == "envi":
        meta = {k: v for k, v in like.metadata.items() if k not in _ENVI_STRUCTURAL}
        for k in _ENVI_PER_BAND & meta.keys():
            if not isinstance(meta[k], list) or len(meta[k]) != bands:
                del meta[k]
        wkt = meta.get("coordinate system string")
        if isinstance(wkt, str) and not wkt.startswith("{"):
            # spectral writes a list joined by " , " with its commas replaced: keep the WKT
            meta["coordinate system string"] = "{" + wkt + "}"
    elif like is not None and like.format == "zarr":  # what ras2s keeps in zarr attributes
        for field, attr in _FROM_ZARR.items():
            value = like.metadata.get(attr)
            if value is not None and (field not in _ENVI_PER_BAND or _per_band(value, bands)):
                meta[field] = value
    meta["header offset"] = 0
    meta["lines"] = rows
    meta["samples"] = cols
    meta["bands"] = bands
    meta["data type"] = envi.dtype_to_envi[np.dtype(plan.dtype).char]
    meta["interleave"] = {v: k for k, v in _ENVI_INTERLEAVE.items()}[plan.layout]
    meta["byte order"] = 0 if sys.byteorder == "little" else 1
    meta["file type"] = "ENVI Standard"
    return meta


class EnviWriter:
    """An ENVI output: the header now, the ``.img`` data file filled window by window."""

    windowed = True

    def __init__(self, tmp: Path, plan) -> None:
        self.layout = plan.layout
        envi.write_envi_header(str(tmp), header(plan), is_library=False)
        dtype = np.dtype(plan.dtype).newbyteorder("=")
        self.array = raw_file(tmp.with_suffix(".img"), stored_shape(plan.shape, plan.layout), dtype)

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Write a bands-first ``block`` at the bands-first ``key`` (three slices)."""
        self.array.write(stored_key(key, self.layout), from_bhw(block, self.layout))

    def finish(self) -> None:
        """Nothing left to do: header and data are on the disk."""

    def close(self) -> None:
        """Nothing to release (the file is open only during a write)."""
