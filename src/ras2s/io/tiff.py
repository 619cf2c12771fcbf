"""TIFF through tifffile: windowed reads, outputs that keep their input's form.

Reading: the first series; its axes say the layout (``...YX`` = bands first, ``YX...``
= bands last). An uncompressed series stored in one piece is read by offset
(:mod:`ras2s.io.raw`); a tiled or compressed one through tifffile's zarr store (only
the tiles or strips a window touches are decoded); what neither can window (zarr not
installed, an exotic series) is read whole.

Writing: one page with every band, pixel interleaved (``HWB``) or band sequential
(``BHW``), in the TIFF input's form (:mod:`ras2s.tiffform`) with its GeoTIFF and GDAL
tags. An uncompressed striped output is written empty by tifffile, then filled in
place; a tiled or compressed one (or a COG) is filled in an uncompressed scratch file
beside it (in the output's layout) and encoded from there, tile by tile or strip block
by strip block, at commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from ras2s.tiffcheck import check_tiff_chain
from ras2s.tiffform import TiffForm, _options, _planar, form_of, write_cog, write_tiff

from .atomic import scratch_file
from .base import GEOTIFF_TAGS, InMemory, Opened, is_real_numeric, nbytes_of, whole_file
from .checks import check_declared
from .layout import from_bhw, stored_key, stored_shape
from .raw import BandsFirst, RawArray, raw_file, reserve


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep tifffile's warnings on bad files off stderr (ours say it in one line)."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


class TiffZarrArray:
    """A tiled or compressed TIFF series, read window by window through tifffile's zarr store.

    A read of the whole series decodes it with tifffile directly (as fast as before).
    """

    windowed = True
    fresh = True

    def __init__(self, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, z) -> None:
        self.tif = tif
        self.series = series
        self.z = z
        self.shape = tuple(series.shape)
        self.dtype = np.dtype(series.dtype)

    def __getitem__(self, key: tuple) -> np.ndarray:
        with quiet():
            if all(k == slice(0, n, 1) for k, n in zip(key, self.shape, strict=True)):
                return self.series.asarray()
            return self.z[tuple(key)]

    def close(self) -> None:
        """Close the zarr store and the TIFF."""
        with contextlib.suppress(Exception):
            self.z.store.close()
        self.tif.close()


def _zarr_of(tif: tifffile.TiffFile):
    """The series' zarr array, or None when zarr is missing or cannot hold it."""
    try:
        import zarr
    except ImportError:
        return None
    try:
        store = tif.aszarr(series=0, level=0)
    except Exception:  # noqa: BLE001 - a series tifffile cannot chunk is read whole
        return None
    try:
        return zarr.open(store, mode="r")
    except Exception:  # noqa: BLE001
        store.close()
        return None


def open_tiff(path: Path, key: str | None, max_bytes: int | None) -> Opened:
    """The first series of a TIFF: mapped, through zarr, or whole (see the module)."""
    with quiet():
        check_tiff_chain(path)  # a looping chain of directories kept tifffile busy for minutes
        tif = tifffile.TiffFile(path)
        try:
            return _open_tiff(path, tif, max_bytes)
        except BaseException:
            tif.close()
            raise


def _open_tiff(path: Path, tif: tifffile.TiffFile, max_bytes: int | None) -> Opened:
    series = tif.series[0]
    uncompressed = all(page.compression == 1 for page in series.pages if page is not None)
    if uncompressed:
        # the pixels must fit in the file before anything is allocated
        check_declared(path, series.shape, series.dtype, path.stat().st_size, "the TIFF")
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
    shape, dtype = tuple(series.shape), np.dtype(series.dtype)
    cube = len(shape) == 3 and min(shape) > 0 and is_real_numeric(dtype)
    if cube and uncompressed and series.dataoffset is not None:
        stored = np.dtype(tif.byteorder + dtype.char)
        array = RawArray(path, series.dataoffset, shape, stored)
        tif.close()
        return Opened(array, "tiff", None, meta, layout=layout)
    z = _zarr_of(tif) if cube else None
    if z is not None and tuple(z.shape) == shape:
        return Opened(TiffZarrArray(tif, series, z), "tiff", None, meta, layout=layout)
    if cube:
        whole_file(path, "this TIFF", nbytes_of(shape, dtype), max_bytes)
    data = series.asarray()
    tif.close()
    return Opened(InMemory(data), "tiff", None, meta, layout=layout, windowed=False)


def _extratags(plan) -> tuple[list, TiffForm | None]:
    """GeoTIFF and GDAL tags of a TIFF ``like`` of the same size, and its form."""
    like = plan.like
    if like is None or like.format != "tiff":
        return [], None
    form = TiffForm.from_metadata(like.metadata)
    tags = []
    if tuple(like.shape[1:]) == tuple(plan.shape[1:]):
        tags = [
            (code, dtype, count, value, True)
            for code, dtype, count, value in like.metadata.get("geotiff_tags", [])
        ]
    return tags, form


class TiffWriter:
    """A TIFF output, window by window (see the module for the two ways).

    One page holding every band (as GDAL reads a multi-band raster). ``HWB`` is written
    pixel-interleaved (planar config contig), ``BHW`` band-sequential (planar config
    separate). The GeoTIFF and GDAL tags of a TIFF ``like`` of the same height and
    width are copied, and so is its form (tiling or rows per strip, compression,
    predictor). ``cog`` writes a Cloud-Optimized GeoTIFF instead.
    """

    windowed = True

    def __init__(self, tmp: Path, plan) -> None:
        self.tmp = tmp
        self.layout = plan.layout
        self.cog = plan.cog
        self.bigtiff = nbytes_of(plan.shape, plan.dtype) > 2**32 - 2**25
        self.extratags, self.form = _extratags(plan)
        self.scratch: Path | None = None
        form = self.form or TiffForm()
        if not self.cog and form.compression == "NONE" and form.tile is None:
            self.array = self._in_place(plan, form)
        else:  # raw, in the output's layout: encoded into the TIFF at commit
            self.scratch = scratch_file(tmp.parent)
            shape = stored_shape(plan.shape, self.layout)
            self.array = raw_file(self.scratch, shape, np.dtype(plan.dtype))

    def _in_place(self, plan, form: TiffForm) -> RawArray:
        """An uncompressed striped TIFF written empty by tifffile, then filled in place."""
        planar, axes = _planar(self.layout)
        shape = stored_shape(plan.shape, self.layout)
        offset, _ = tifffile.imwrite(
            self.tmp,
            shape=shape,
            dtype=plan.dtype,
            photometric="minisblack",
            planarconfig=planar,
            metadata={"axes": axes},
            extratags=self.extratags,
            bigtiff=self.bigtiff,
            returnoffset=True,
            **_options(form, np.dtype(plan.dtype)),
        )
        reserve(self.tmp, offset + nbytes_of(shape, plan.dtype))
        return RawArray(self.tmp, offset, shape, plan.dtype)

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Write a bands-first ``block`` at the bands-first ``key`` (three slices)."""
        self.array.write(stored_key(key, self.layout), from_bhw(block, self.layout))

    def finish(self) -> None:
        """Encode the scratch into the TIFF (tiled, compressed or COG); else nothing."""
        if self.scratch is None:
            return
        cube = BandsFirst(self.array, self.layout)
        if self.cog:
            write_cog(
                self.tmp,
                cube,
                layout=self.layout,
                extratags=self.extratags,
                bigtiff=self.bigtiff,
            )
        else:
            write_tiff(
                self.tmp,
                cube,
                layout=self.layout,
                form=self.form,
                extratags=self.extratags,
                bigtiff=self.bigtiff,
            )

    def close(self) -> None:
        """Remove the scratch file."""
        if self.scratch is not None:
            with contextlib.suppress(OSError):
                self.scratch.unlink()
