"""napari reader: every format :func:`ras2s.io.read_cube` reads, one image layer per cube.

Each cube opens bands first, ``(bands, H, W)``, so napari gives the bands a slider. The
layer's ``metadata`` carries what the file says (:func:`cube_metadata`), so that the
writer can keep it and the widgets can plot against wavelength. A container holding
several 3-D arrays (``.mat``, ``.npz``, ``.h5``) opens each as its own layer, named
``<file> [<key>]``. A file ras2s refuses gives one line in napari's notifications (the
same line the CLI prints) and no layer, never a traceback.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ras2s import io as cube_io
from ras2s.errors import InputError, LayoutError, Ras2sError

__all__ = ["container_keys", "cube_metadata", "get_reader", "layer_data", "read_layers"]

#: ENVI header fields that place the image on the ground.
_ENVI_GEO = ("map info", "coordinate system string", "projection info", "pixel size")

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def _readable(path: Path) -> bool:
    """Whether ras2s reads ``path``: a known extension, or a folder of band PNGs."""
    if path.suffix.lower() in cube_io.FORMATS:
        return True
    return path.is_dir() and cube_io.is_png_cube_folder(path)


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[tuple]] | None:
    """npe2 ``get_reader`` hook: :func:`read_layers` for paths ras2s reads, else None."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or not all(_readable(Path(p)) for p in paths):
        return None
    return read_layers


def read_layers(path: PathOrPaths) -> list[tuple]:
    """Read one or more cube files as napari layer data tuples ``(data, kwargs, "image")``.

    A file that cannot be read is reported as one line in napari's notifications and
    skipped; when nothing could be read, napari's "no layers" sentinel ``[(None,)]`` is
    returned (napari then shows no second error).
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers: list[tuple] = []
    for p in paths:
        try:
            cubes = read_all(Path(p))
        except LayoutError as err:
            _notify_error(f"{err}; in napari's console: ras2s.read_cube(path, layout='BHW')")
            continue
        except Ras2sError as err:
            _notify_error(str(err))
            continue
        several = len(cubes) > 1
        layers += [layer_data(c, name=_layer_name(c, several)) for c in cubes]
    return layers or [(None,)]


def read_all(path: Path) -> list[cube_io.CubeFile]:
    """The cube in ``path``, or every 3-D array of a container that holds several."""
    try:
        return [cube_io.read_cube(path)]
    except InputError:
        keys = container_keys(path)
        if len(keys) < 2:
            raise
    return [cube_io.read_cube(path, key=k) for k in keys]


def _layer_name(cube: cube_io.CubeFile, several: bool) -> str:
    stem = cube.path.name if cube.format in ("png", "envi") else cube.path.stem
    if cube.format == "envi":
        stem = Path(stem).stem
    return f"{stem} [{cube.key}]" if several and cube.key else stem


def layer_data(cube: cube_io.CubeFile, *, name: str | None = None) -> tuple:
    """``(data, kwargs, "image")`` for a cube read by ras2s: bands first, metadata kept."""
    kwargs = {
        "name": name or _layer_name(cube, False),
        "metadata": cube_metadata(cube),
        "axis_labels": ("band", "y", "x"),
    }
    return cube.data, kwargs, "image"


def _floats(values: Any) -> list[float] | None:
    if not isinstance(values, list | tuple) or not values:
        return None
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _texts(values: Any) -> list[str] | None:
    if not isinstance(values, list | tuple) or not values:
        return None
    return [str(v) for v in values]


def _georeference(cube: cube_io.CubeFile) -> dict[str, Any] | None:
    meta = cube.metadata
    geo: dict[str, Any] = {}
    if cube.format == "tiff":
        for code, _dtype, _count, value in meta.get("geotiff_tags", []):
            if code in cube_io.GEOTIFF_TAGS and code != 42113:  # nodata has its own key
                text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
                geo[cube_io.GEOTIFF_TAGS[code]] = text
    elif cube.format == "envi":
        geo = {k: meta[k] for k in _ENVI_GEO if k in meta}
    return geo or None


def cube_metadata(cube: cube_io.CubeFile) -> dict[str, Any]:
    """The layer metadata of a cube read by ras2s.

    Keys: ``source`` (the path read), ``format``, ``key``, ``layout`` (as stored),
    ``wavelengths`` (floats or None), ``wavelength_units``, ``band_names``,
    ``georeference`` (GeoTIFF tags by name, or ENVI ``map info`` / ``coordinate system
    string``; None when the file has none), ``nodata`` (the value the file declares, or
    None), ``bad_bands`` (0-based indices an ENVI ``bbl`` marks bad) and
    ``file_metadata`` (everything :class:`ras2s.io.CubeFile` holds, which the writer
    hands back to :func:`ras2s.io.write_cube` as ``like``).
    """
    meta = cube.metadata if isinstance(cube.metadata, dict) else {}
    wavelengths = _floats(meta.get("wavelength"))
    if wavelengths is not None and len(wavelengths) != cube.data.shape[0]:
        wavelengths = None
    names = _texts(meta.get("band names")) or (
        _texts(meta.get("files")) if cube.format == "png" else None
    )
    if names is not None and len(names) != cube.data.shape[0]:
        names = None
    return {
        "source": str(cube.path),
        "format": cube.format,
        "key": cube.key,
        "layout": cube.layout,
        "wavelengths": wavelengths,
        "wavelength_units": meta.get("wavelength units") if wavelengths else None,
        "band_names": names,
        "georeference": _georeference(cube),
        "nodata": cube_io.cube_nodata(cube),
        "bad_bands": cube_io.bad_bands(cube),
        "file_metadata": meta,
    }


# ------------------------------------------------------------------ several arrays


def container_keys(path: str | os.PathLike) -> list[str]:
    """Names of the 3-D numeric arrays in a ``.mat``, ``.npz``, ``.h5`` or ``.zarr`` ([] else).

    Read from the headers (nothing is loaded). Used only after
    :func:`ras2s.io.read_cube` refused the file, to open each candidate as a layer.
    """
    p = Path(path)
    fmt = cube_io.FORMATS.get(p.suffix.lower())
    try:
        if fmt == "npz":
            return _npz_keys(p)
        if fmt == "mat":
            return _mat_keys(p)
        if fmt == "h5":
            return _h5_keys(p)
        if fmt == "zarr":
            return _zarr_keys(p)
    except Exception:  # an unreadable container: read_cube's own error stands
        return []
    return []


def _numeric(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind in "iuf"


def _npz_keys(path: Path) -> list[str]:
    keys = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith(".npy"):
                continue
            with archive.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _fortran, dtype = read(fh)
            if len(shape) == 3 and _numeric(dtype):
                keys.append(name[: -len(".npy")])
    return keys


def _h5_keys(path: Path) -> list[str]:
    import h5py

    keys: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3 and _numeric(obj.dtype):
            if not name.startswith("#refs#"):
                keys.append(name)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return keys


def _zarr_keys(path: Path) -> list[str]:
    import zarr

    root = zarr.open(str(path), mode="r")
    keys: list[str] = []

    def walk(group: Any, prefix: str) -> None:
        for name, array in group.arrays():
            if array.ndim == 3 and _numeric(array.dtype):
                keys.append(prefix + name)
        for name, sub in group.groups():
            walk(sub, f"{prefix}{name}/")

    if hasattr(root, "arrays"):
        walk(root, "")
    return keys


def _mat_keys(path: Path) -> list[str]:
    import scipy.io

    with open(path, "rb") as fh:
        head = fh.read(128)
    if b"MATLAB 7.3" in head[:116]:
        return _h5_keys(path)
    numeric = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32"}
    numeric |= {"int64", "uint64"}
    return [
        name for name, shape, kind in scipy.io.whosmat(path) if len(shape) == 3 and kind in numeric
    ]


def _notify_error(message: str) -> None:
    """One line in napari's notifications (no traceback dialog)."""
    from napari.utils.notifications import show_error

    show_error(message.splitlines()[0] if message else "ras2s: the file could not be read")
