"""napari writer: an image layer saved in any format ras2s writes, its metadata kept.

The output format follows the extension (:data:`ras2s.io.FORMATS`). When the layer came
from ras2s's reader (or is a denoised copy of such a layer), the file it was read from
is handed to :func:`ras2s.io.write_cube` as ``like``: a TIFF keeps its GeoTIFF and GDAL
tags (georeference, nodata) and its form, an ENVI file its header (wavelengths, map
info, ``data ignore value``, ``bbl``), a container its variable name and layout. A layer
of any other origin is written bands first with no metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ras2s import io as cube_io
from ras2s.errors import Ras2sError

__all__ = ["like_from_metadata", "write_image"]


def like_from_metadata(data: np.ndarray, metadata: dict[str, Any]) -> cube_io.CubeFile | None:
    """The :class:`ras2s.io.CubeFile` the reader described in ``metadata``, or None."""
    need = ("source", "format", "layout", "file_metadata")
    if not isinstance(metadata, dict) or not all(metadata.get(k) is not None for k in need):
        return None
    return cube_io.CubeFile(
        data=data,
        path=Path(metadata["source"]),
        format=metadata["format"],
        key=metadata.get("key"),
        layout=metadata["layout"],
        metadata=metadata["file_metadata"],
    )


def write_image(path: str | os.PathLike, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: write ``data`` ``(bands, H, W)`` to ``path``; [path].

    napari has already asked before replacing an existing file, so the file is
    replaced (atomically). A cube ras2s cannot write (2-D layer, a dtype the format
    cannot hold) gives one line in napari's notifications and writes nothing.
    """
    array = np.asarray(data)
    metadata = meta.get("metadata", {}) if isinstance(meta, dict) else {}
    like = like_from_metadata(array, metadata)
    try:
        written = cube_io.write_cube(path, array, like=like, force=True)
    except Ras2sError as err:
        from napari.utils.notifications import show_error

        show_error(str(err).splitlines()[0])
        return []
    return [str(written)]
