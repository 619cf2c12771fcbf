"""Zarr: a ``.zarr`` directory store, chunked (bands, y, x), windowed both ways.

Reading: a store holding one array, or a group whose 3-D numeric arrays follow the
``--key`` rule of ``.h5`` (``--key group/name``). The layout comes from the array's
dimension names (zarr v3 ``dimension_names``, or xarray's ``_ARRAY_DIMENSIONS``
attribute) when the first or last one names bands (``band``, ``bands``,
``wavelength``), else from the layout rule. A store missing chunks is refused, as a
sparse HDF5 dataset is: a truncated copy would read as fill values.

Writing: a group holding one array named ``key`` (default ``data``), bands first,
chunks of ``(min(bands, 64), 256, 256)``, zarr's default compression, every chunk
stored, dimension names ``(band, y, x)`` so that ``xarray.open_zarr`` reads it, and
attributes carrying what ras2s keeps of its input: ``wavelength``,
``wavelength_units``, ``fwhm``, ``band_names``, ``bbl`` and ``nodata``. The store is
written in a temporary folder and put in place whole.

Needs the ``scale`` extra (``pip install 'ras2s[scale]'``); zarr 2 and 3 both work.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ras2s.errors import InputError, OutputError

from .base import ZARR_MISSING, Entry, Opened, select

BAND_NAMES = {"band", "bands", "wavelength"}
#: chunk height and width of zarr outputs; bands per chunk at most
CHUNK_SIDE, CHUNK_BANDS = 256, 64
#: per-band attributes, and the ENVI header fields they come from
_PER_BAND = {
    "wavelength": "wavelength",
    "fwhm": "fwhm",
    "band_names": "band names",
    "bbl": "bbl",
}


def _zarr(path: Path, error: type = InputError):
    try:
        import zarr
    except ImportError:
        raise error(f"{path}: {ZARR_MISSING}") from None
    return zarr


def _v3(zarr) -> bool:
    return int(zarr.__version__.split(".")[0]) >= 3


def _walk(group, prefix: str = ""):
    """Every array of a zarr group and its sub-groups, as ``(path, array)``."""
    for name, array in group.arrays():
        yield prefix + name, array
    for name, sub in group.groups():
        yield from _walk(sub, prefix + name + "/")


def _dimension_names(array) -> tuple | None:
    names = getattr(getattr(array, "metadata", None), "dimension_names", None)
    if names is None:
        names = array.attrs.get("_ARRAY_DIMENSIONS")
    return tuple(str(n).lower() for n in names) if names else None


_METADATA = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def _chunk_counts(store: Path, name: str | None, array) -> tuple[int, int]:
    """``(stored, declared)`` chunk files (shards when sharded) of an array of a folder store.

    Stored ones are counted by listing the array's folder (what is on the disk, never
    more: asking zarr walks every declared chunk, which a hostile shape makes millions).
    """
    block = getattr(array, "shards", None) or array.chunks
    grid = zip(array.shape, block, strict=True)
    declared = math.prod(-(-int(s) // max(1, int(c))) for s, c in grid)
    folder = store / name if name else store
    stored = 0
    for _root, dirs, files in os.walk(folder):
        if _root != str(folder) and any(f in _METADATA for f in files):
            dirs.clear()  # a node inside (a zarr 2 group's array): not this array's chunks
            continue
        stored += sum(1 for f in files if f not in _METADATA)
        if stored > declared:
            break
    return stored, declared


class ZarrArray:
    """A zarr array, read window by window (only the chunks a window touches)."""

    windowed = True
    fresh = True

    def __init__(self, array) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: tuple) -> np.ndarray:
        return np.asarray(self.array[tuple(key)])

    def close(self) -> None:
        """Let the array go."""
        self.array = None


def open_zarr(path: Path, key: str | None, max_bytes: int | None) -> Opened:
    """An array of a zarr store (``key``, else the single 3-D numeric one), windowed."""
    zarr = _zarr(path)
    node = zarr.open(store=str(path), mode="r")
    if hasattr(node, "arrays"):  # a group
        arrays = dict(_walk(node))
        entries = {
            n: Entry(tuple(a.shape), str(a.dtype), np.dtype(a.dtype).kind in "iuf")
            for n, a in arrays.items()
        }
        name: str | None = select(path, entries, key.strip("/") if key else None)
        array = arrays[name]
    else:
        name, array = None, node
    shape = tuple(array.shape)
    if len(shape) == 3 and min(shape) > 0:
        stored, total = _chunk_counts(path, name, array)
        if stored < total:  # a truncated copy, or metadata declaring more than is stored
            raise InputError(
                f"{path}: array {name or '/'!r} declares {shape} {array.dtype}, but only "
                f"{stored} of its {total} chunks are stored; the store is incomplete (sparse: "
                "ras2s reads stores with every chunk written, zarr's write_empty_chunks=True)"
            )
    meta = {**dict(array.attrs), "chunks": tuple(int(c) for c in array.chunks)}
    dims = _dimension_names(array)
    layout = None
    if dims and len(dims) == 3:
        layout = "BHW" if dims[0] in BAND_NAMES else "HWB" if dims[-1] in BAND_NAMES else None
    return Opened(ZarrArray(array), "zarr", name, meta, layout=layout)


def _number(text: object) -> object:
    """A header value as a number where it is one (``"1"`` -> 1, ``"400.5"`` -> 400.5)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return str(text)
    return int(value) if value.is_integer() and "." not in str(text) else value


def attributes(plan) -> dict:
    """The attributes of a zarr output: what ras2s keeps of ``plan.like`` (see the module)."""
    from .dataset import cube_nodata

    like = plan.like
    bands = plan.shape[0]
    attrs: dict = {}
    if like is None:
        return attrs
    if like.format == "zarr":
        attrs = {k: v for k, v in like.metadata.items() if k not in ("chunks", "_ARRAY_DIMENSIONS")}
    elif like.format == "envi":
        for name, field in _PER_BAND.items():
            values = like.metadata.get(field)
            if isinstance(values, list):
                attrs[name] = [_number(v) if name != "band_names" else str(v) for v in values]
        if like.metadata.get("wavelength units"):
            attrs["wavelength_units"] = str(like.metadata["wavelength units"])
    for name in _PER_BAND:
        if name in attrs and (not isinstance(attrs[name], list) or len(attrs[name]) != bands):
            del attrs[name]
    nodata = cube_nodata(like)
    if nodata is not None:
        attrs["nodata"] = nodata if math.isfinite(nodata) else str(nodata)
    return attrs


class ZarrWriter:
    """A zarr output in the temporary folder ``tmp``: one array, written by slices."""

    windowed = True

    def __init__(self, tmp: Path, plan) -> None:
        zarr = _zarr(plan.path, OutputError)
        bands, h, w = plan.shape
        chunks = (min(bands, CHUNK_BANDS), min(h, CHUNK_SIDE), min(w, CHUNK_SIDE))
        dtype = np.dtype(plan.dtype).newbyteorder("=")
        group = zarr.open_group(store=str(tmp), mode="w")
        attrs = attributes(plan)
        if _v3(zarr):
            self.array = group.create_array(
                plan.key,
                shape=plan.shape,
                chunks=chunks,
                dtype=dtype,
                dimension_names=("band", "y", "x"),
                attributes=attrs,
                config={"write_empty_chunks": True},
            )
        else:  # pragma: no cover - zarr 2
            self.array = group.create_dataset(
                plan.key, shape=plan.shape, chunks=chunks, dtype=dtype, write_empty_chunks=True
            )
            self.array.attrs.update({**attrs, "_ARRAY_DIMENSIONS": ["band", "y", "x"]})

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Write a bands-first ``block`` at the bands-first ``key`` (three slices)."""
        self.array[tuple(key)] = block

    def finish(self) -> None:
        """Nothing left to do: every chunk is stored as it is written."""

    def close(self) -> None:
        """Nothing to release."""
