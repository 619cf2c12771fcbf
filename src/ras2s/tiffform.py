"""The form of a TIFF output: tiling, compression, predictor, and Cloud-Optimized GeoTIFF.

A TIFF written from a TIFF input keeps the input's form (:class:`TiffForm`, read with
:func:`form_of`): tile shape or rows per strip, compression and predictor (planar
configuration follows the cube's layout, see :mod:`ras2s.io`). A lossy compression
(JPEG, WebP, ...) or one this installation cannot encode becomes lossless deflate:
denoised pixels are never degraded on the way out.

:func:`write_cog` writes a Cloud-Optimized GeoTIFF through tifffile: each resolution
level is encoded by tifffile, then the file is assembled in the order the COG
specification asks (https://github.com/cogeotiff/cog-spec/blob/master/spec.md) and GDAL
writes: the header, GDAL's structural-metadata "ghost" block, every IFD (full
resolution first, then overviews by decreasing size), then the tile data (smallest
overview first, full resolution last), each tile with GDAL's 4-byte size leader and
repeated last-4-bytes trailer. GDAL then reports ``LAYOUT=COG``.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

#: Compressions kept as they are (lossless); any other becomes deflate.
_LOSSLESS = {"NONE", "ADOBE_DEFLATE", "DEFLATE", "LZW", "PACKBITS", "LZMA", "ZSTD"}
_TILE_OFFSETS, _TILE_BYTECOUNTS = 324, 325
_GHOST = (
    "LAYOUT=IFDS_BEFORE_DATA\n"
    "BLOCK_ORDER=ROW_MAJOR\n"
    "BLOCK_LEADER=SIZE_AS_UINT4\n"
    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\n"
    "KNOWN_INCOMPATIBLE_EDITION=NO\n "
)


@dataclass(frozen=True)
class TiffForm:
    """How a TIFF stores its pixels (planar configuration aside).

    Attributes
    ----------
    tile : tuple of int or None
        ``(tile length, tile width)`` in pixels, None for strips.
    rowsperstrip : int or None
        Rows per strip when striped (None: tifffile's default).
    compression : str
        A :class:`tifffile.COMPRESSION` name: ``"NONE"``, ``"ADOBE_DEFLATE"``, ...
    predictor : int
        1 none, 2 horizontal differencing, 3 floating point.
    """

    tile: tuple[int, int] | None = None
    rowsperstrip: int | None = None
    compression: str = "NONE"
    predictor: int = 1

    def as_metadata(self) -> dict:
        """The form as plain values, for :attr:`ras2s.io.CubeFile.metadata`."""
        return {
            "tile": self.tile,
            "rowsperstrip": self.rowsperstrip,
            "compression": self.compression,
            "predictor": self.predictor,
        }

    @classmethod
    def from_metadata(cls, meta: dict) -> TiffForm:
        """The form recorded by :meth:`as_metadata` (defaults for what is missing)."""
        tile = meta.get("tile")
        rows = meta.get("rowsperstrip")
        return cls(
            tile=(int(tile[0]), int(tile[1])) if tile else None,
            rowsperstrip=int(rows) if rows else None,
            compression=str(meta.get("compression", "NONE")),
            predictor=int(meta.get("predictor", 1)),
        )


def form_of(page: tifffile.TiffPage) -> TiffForm:
    """The form of one TIFF page (the first page stands for a multi-page file)."""
    tiled = bool(page.is_tiled)
    rows = int(page.rowsperstrip or 0)
    return TiffForm(
        tile=(int(page.tilelength), int(page.tilewidth)) if tiled else None,
        rowsperstrip=None if tiled or rows <= 0 or rows >= page.imagelength else rows,
        # an unknown code (a damaged or exotic file) is kept as its number, never raised
        compression=getattr(page.compression, "name", str(page.compression)),
        predictor=int(page.predictor),
    )


@functools.cache
def _encodable(compression: str, predictor: int, dtype: str) -> bool:
    """Whether tifffile here can write ``compression`` + ``predictor`` for ``dtype``."""
    try:
        tifffile.imwrite(
            io.BytesIO(),
            np.zeros((16, 16), dtype),
            compression=None if compression == "NONE" else compression,
            predictor=predictor if predictor > 1 else None,
        )
    except Exception:  # noqa: BLE001 - a missing codec surfaces as KeyError/ImportError/...
        return False
    return True


def _options(form: TiffForm, dtype: np.dtype) -> dict:
    """tifffile.imwrite keywords that write ``form`` for ``dtype`` (lossless, encodable)."""
    compression = form.compression if form.compression in _LOSSLESS else "ADOBE_DEFLATE"
    if not _encodable(compression, 1, dtype.str):
        compression = "ADOBE_DEFLATE"
    predictor = 1
    if compression != "NONE" and form.predictor > 1:
        # horizontal differencing suits every dtype; floating point only floats
        wanted = 3 if form.predictor == 3 and dtype.kind == "f" else 2
        for p in (wanted, 2):
            if _encodable(compression, p, dtype.str):
                predictor = p
                break
    out: dict = {
        "compression": None if compression == "NONE" else compression,
        "predictor": predictor if predictor > 1 else None,
    }
    if form.tile is not None:
        out["tile"] = form.tile
    elif form.rowsperstrip is not None:
        out["rowsperstrip"] = form.rowsperstrip
    return out


def _stored(data: np.ndarray, layout: str) -> tuple[np.ndarray, str, str]:
    """``(array as stored, planar config, axes)`` for a bands-first cube."""
    if layout == "HWB":
        return data.transpose(1, 2, 0), "contig", "YXS"
    return data, "separate", "SYX"


def write_tiff(
    path: Path,
    data: np.ndarray,
    *,
    layout: str,
    form: TiffForm | None = None,
    extratags: Sequence[tuple] = (),
    bigtiff: bool = False,
) -> None:
    """Write a bands-first cube as one TIFF page in ``form`` (default: tifffile's).

    Parameters
    ----------
    path : pathlib.Path
        Output file.
    data : numpy.ndarray
        ``(bands, H, W)``, any dtype tifffile writes.
    layout : {"HWB", "BHW"}
        ``HWB``: pixel interleaved (planar config contig); ``BHW``: band sequential
        (planar config separate).
    form : TiffForm, optional
        Tiling, compression and predictor to keep (see :func:`form_of`).
    extratags : sequence of tuple
        tifffile ``extratags`` (GeoTIFF and GDAL tags).
    bigtiff : bool
        Write a BigTIFF.
    """
    array, planar, axes = _stored(data, layout)
    tifffile.imwrite(
        path,
        array,
        photometric="minisblack",
        planarconfig=planar,
        metadata={"axes": axes},
        extratags=list(extratags),
        bigtiff=bigtiff,
        **_options(form or TiffForm(), data.dtype),
    )


# --------------------------------------------------------------------------- COG


def cog_levels(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """``(H, W)`` of the full image then each overview (halved until within one tile).

    Examples
    --------
    >>> cog_levels((600, 700), 256)
    [(600, 700), (300, 350), (150, 175)]
    """
    levels = [shape]
    while max(levels[-1]) > tile:
        h, w = levels[-1]
        levels.append(((h + 1) // 2, (w + 1) // 2))
    return levels


def _level(
    data: np.ndarray, layout: str, tile: int, extratags: Sequence[tuple], bigtiff: bool, main: bool
) -> tuple[bytes, tifffile.TiffPage, tifffile.TiffFile]:
    """One resolution level encoded by tifffile in memory: (its bytes, its page)."""
    array, planar, axes = _stored(data, layout)
    buf = io.BytesIO()
    form = TiffForm(tile=(tile, tile), compression="ADOBE_DEFLATE", predictor=2)
    tifffile.imwrite(
        buf,
        array,
        photometric="minisblack",
        planarconfig=planar,
        metadata={"axes": axes} if main else None,
        extratags=list(extratags) if main else [],
        subfiletype=0 if main else 1,
        bigtiff=bigtiff,
        **_options(form, data.dtype),
    )
    raw = buf.getvalue()
    tif = tifffile.TiffFile(io.BytesIO(raw))
    return raw, tif.pages.first, tif


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    layout: str,
    extratags: Sequence[tuple] = (),
    tile: int | None = None,
    bigtiff: bool = False,
) -> None:
    """Write a bands-first cube as a Cloud-Optimized GeoTIFF.

    Tiled (``tile`` x ``tile``), deflate with horizontal-differencing predictor,
    internal overviews made by decimation (every second pixel: no value is invented or
    mixed with nodata) down to one tile, IFDs before data, data smallest overview first.

    Parameters
    ----------
    path : pathlib.Path
        Output file.
    data : numpy.ndarray
        ``(bands, H, W)``.
    layout : {"HWB", "BHW"}
        Planar configuration, as in :func:`write_tiff`.
    extratags : sequence of tuple
        tifffile ``extratags`` for the full-resolution IFD (GeoTIFF and GDAL tags).
    tile : {256, 512}, optional
        Tile size; default 512 when the larger side is 1024 pixels or more, else 256.
    bigtiff : bool
        Write a BigTIFF.
    """
    h, w = data.shape[1:]
    tile = tile or (512 if max(h, w) >= 1024 else 256)
    pages = []
    keep = []  # the in-memory files stay open while their pages are read
    for i, _ in enumerate(cog_levels((h, w), tile)):
        step = 2**i
        raw, page, tif = _level(
            data[:, ::step, ::step], layout, tile, extratags, bigtiff, main=i == 0
        )
        pages.append((raw, page))
        keep.append(tif)
    try:
        _assemble(path, pages, bigtiff)
    finally:
        for tif in keep:
            tif.close()


def _assemble(path: Path, pages: list[tuple[bytes, tifffile.TiffPage]], bigtiff: bool) -> None:
    """Write ``pages`` (full resolution first) in COG order to ``path``."""
    bo = "<"
    entry, count_fmt, next_fmt, inline = (20, "Q", "Q", 8) if bigtiff else (12, "H", "I", 4)
    offset_type = 16 if bigtiff else 4  # LONG8 / LONG
    header = 16 if bigtiff else 8
    ghost = _GHOST.encode("ascii")
    ghost = f"GDAL_STRUCTURAL_METADATA_SIZE={len(ghost):06d} bytes\n".encode("ascii") + ghost

    # each IFD's tags as (code, type, count, raw value bytes); tile offsets filled later
    ifds = []
    for raw, page in pages:
        tags = []
        for tag in sorted(page.tags.values(), key=lambda t: t.code):
            if tag.code in (_TILE_OFFSETS, _TILE_BYTECOUNTS):
                tags.append((tag.code, offset_type, len(page.dataoffsets), b""))
                continue
            size = tag.count * struct.calcsize(bo + tifffile.TIFF.DATA_FORMATS[tag.dtype])
            tags.append((tag.code, int(tag.dtype), tag.count, raw[tag.valueoffset :][:size]))
        tiles = [raw[o : o + n] for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
        ifds.append((tags, tiles))

    def out_of_line(tags: list) -> int:
        item = 8 if bigtiff else 4
        sizes = [
            len(v) if code not in (_TILE_OFFSETS, _TILE_BYTECOUNTS) else n * item
            for code, _t, n, v in tags
        ]
        return sum(s + (s & 1) for s in sizes if s > inline)

    # positions: header, ghost, IFDs (each followed by its values), then data
    pos = header + len(ghost)
    pos += pos & 1
    ifd_pos = []
    for tags, _tiles in ifds:
        ifd_pos.append(pos)
        pos += struct.calcsize(bo + count_fmt) + entry * len(tags) + struct.calcsize(bo + next_fmt)
        pos += out_of_line(tags)
        pos += pos & 1
    tile_offsets: list[list[int]] = [[] for _ in ifds]
    for i in reversed(range(len(ifds))):  # smallest overview first, full resolution last
        for t in ifds[i][1]:
            tile_offsets[i].append(pos + 4)  # after the 4-byte leader
            pos += 4 + len(t) + min(4, len(t))

    with open(path, "wb") as fh:
        if bigtiff:
            fh.write(b"II" + struct.pack(bo + "HHHQ", 43, 8, 0, ifd_pos[0]))
        else:
            fh.write(b"II" + struct.pack(bo + "HI", 42, ifd_pos[0]))
        fh.write(ghost)
        for i, (tags, tiles) in enumerate(ifds):
            _pad_to(fh, ifd_pos[i])
            nxt = ifd_pos[i + 1] if i + 1 < len(ifds) else 0
            values_at = ifd_pos[i] + struct.calcsize(bo + count_fmt) + entry * len(tags)
            values_at += struct.calcsize(bo + next_fmt)
            head = [struct.pack(bo + count_fmt, len(tags))]
            values = []
            for code, dtype, count, value in tags:
                if code == _TILE_OFFSETS:
                    value = struct.pack(f"{bo}{count}{'Q' if bigtiff else 'I'}", *tile_offsets[i])
                elif code == _TILE_BYTECOUNTS:
                    value = struct.pack(
                        f"{bo}{count}{'Q' if bigtiff else 'I'}", *(len(t) for t in tiles)
                    )
                if len(value) > inline:
                    field = struct.pack(bo + ("Q" if bigtiff else "I"), values_at)
                    values.append(value + b"\0" * (len(value) & 1))
                    values_at += len(values[-1])
                else:
                    field = value.ljust(inline, b"\0")
                fmt = bo + ("HHQ" if bigtiff else "HHI")
                head.append(struct.pack(fmt, code, dtype, count) + field)
            head.append(struct.pack(bo + next_fmt, nxt))
            fh.write(b"".join(head) + b"".join(values))
        for i in reversed(range(len(ifds))):
            tiles = ifds[i][1]
            _pad_to(fh, tile_offsets[i][0] - 4)
            for t in tiles:
                fh.write(struct.pack(bo + "I", len(t)) + t + t[-4:])


def _pad_to(fh: io.BufferedWriter, pos: int) -> None:
    here = fh.tell()
    if here > pos:  # pragma: no cover - a layout error, never user input
        raise RuntimeError(f"COG layout: at byte {here}, past {pos}")
    fh.write(b"\0" * (pos - here))
