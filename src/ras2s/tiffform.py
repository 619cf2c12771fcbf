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

import contextlib
import functools
import io
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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


def _planar(layout: str) -> tuple[str, str]:
    """``(planar config, axes)`` of a TIFF page holding a cube stored in ``layout``."""
    return ("contig", "YXS") if layout == "HWB" else ("separate", "SYX")


def _stored_shape(shape: Sequence[int], layout: str) -> tuple[int, int, int]:
    b, h, w = (int(s) for s in shape)
    return (h, w, b) if layout == "HWB" else (b, h, w)


#: bytes of the cube read at once when a streamed TIFF is encoded (a block of strips)
_BLOCK = 32 * 2**20


def _tiles(data: Any, layout: str, tile: tuple[int, int], step: int = 1) -> Iterator[np.ndarray]:
    """The tiles of a bands-first cube (every ``step``-th pixel), in TIFF order.

    Band-sequential (``BHW``): band by band, each tile row read once; pixel-interleaved
    (``HWB``): tile by tile, every band of the tile at once.
    """
    bands, h, w = data.shape
    th, tw = tile
    lh, lw = -(-h // step), -(-w // step)  # the level's size
    if layout == "HWB":
        for y in range(0, lh, th):
            for x in range(0, lw, tw):
                rows = slice(y * step, min(h, (y + th) * step), step)
                cols = slice(x * step, min(w, (x + tw) * step), step)
                yield np.ascontiguousarray(data[:, rows, cols].transpose(1, 2, 0))
        return
    for b in range(bands):
        for y in range(0, lh, th):
            rows = slice(y * step, min(h, (y + th) * step), step)
            strip = np.array(data[b : b + 1, rows, ::step][0])
            for x in range(0, lw, tw):
                yield strip[:, x : x + tw]


def _strips(data: Any, layout: str, rows_per_strip: int, options: dict) -> Iterator[bytes]:
    """The encoded strips of a bands-first cube, in TIFF order, a block of strips at a time.

    Each block is encoded by tifffile itself (same compression, predictor and rows per
    strip), so every strip is byte for byte what writing the whole array would give.
    """
    bands, h, w = data.shape
    planar, _ = _planar(layout)
    samples = bands if layout == "HWB" else 1
    row_bytes = w * samples * np.dtype(data.dtype).itemsize
    per_block = max(1, _BLOCK // max(1, row_bytes * rows_per_strip)) * rows_per_strip
    for b in [None] if layout == "HWB" else range(bands):
        for y in range(0, h, per_block):
            rows = slice(y, min(h, y + per_block))
            if b is None:
                block = np.ascontiguousarray(data[:, rows, :].transpose(1, 2, 0))
            else:
                block = np.array(data[b : b + 1, rows, :][0])
            if options.get("compression") is None:
                yield block.tobytes()
                continue
            buf = io.BytesIO()
            tifffile.imwrite(
                buf,
                block,
                photometric="minisblack",
                planarconfig=planar if b is None else None,
                rowsperstrip=rows_per_strip,
                compression=options["compression"],
                predictor=options["predictor"],
            )
            raw = buf.getvalue()
            with tifffile.TiffFile(io.BytesIO(raw)) as tif:
                page = tif.pages.first
                spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
            for offset, count in spans:
                yield raw[offset : offset + count]


def write_tiff(
    path: Path | BinaryIO,
    data: Any,
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
    data : numpy.ndarray or array-like
        ``(bands, H, W)``, any dtype tifffile writes. Anything else with ``shape``,
        ``dtype`` and ``[bands, rows, cols]`` slicing (a :class:`ras2s.io.CubeSource`, a
        raw array) is streamed: read a tile, or a block of strips, at a time.
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
    dtype = np.dtype(data.dtype)
    options = _options(form or TiffForm(), dtype)
    planar, axes = _planar(layout)
    common = {
        "photometric": "minisblack",
        "planarconfig": planar,
        "metadata": {"axes": axes},
        "extratags": list(extratags),
        "bigtiff": bigtiff,
    }
    if isinstance(data, np.ndarray):
        tifffile.imwrite(path, _stored(data, layout)[0], **common, **options)
        return
    shape = _stored_shape(data.shape, layout)
    if "tile" in options:
        chunks: Iterator = _tiles(data, layout, options["tile"])
    else:
        samples = shape[2] if layout == "HWB" else 1
        rows = options.pop("rowsperstrip", None)
        if rows is None:  # tifffile's default, named so that the strips can be made here
            rows = 262144 // (data.shape[2] * samples * dtype.itemsize)
            rows = rows if options["compression"] is not None else data.shape[1]
        rows = max(1, min(int(rows), int(data.shape[1])))
        options["rowsperstrip"] = rows
        chunks = _strips(data, layout, rows, options)
    tifffile.imwrite(
        path, chunks, shape=shape, dtype=dtype, buffersize=_BLOCK, **common, **options
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
    data: Any,
    layout: str,
    tile: int,
    extratags: Sequence[tuple],
    bigtiff: bool,
    step: int,
    fh: BinaryIO,
) -> tifffile.TiffFile:
    """One resolution level (every ``step``-th pixel) encoded by tifffile into ``fh``."""
    planar, axes = _planar(layout)
    main = step == 1
    bands, h, w = data.shape
    shape = _stored_shape((bands, -(-h // step), -(-w // step)), layout)
    form = TiffForm(tile=(tile, tile), compression="ADOBE_DEFLATE", predictor=2)
    tifffile.imwrite(
        fh,
        _tiles(data, layout, (tile, tile), step),
        shape=shape,
        dtype=np.dtype(data.dtype),
        photometric="minisblack",
        planarconfig=planar,
        metadata={"axes": axes} if main else None,
        extratags=list(extratags) if main else [],
        subfiletype=0 if main else 1,
        bigtiff=bigtiff,
        buffersize=_BLOCK,
        **_options(form, np.dtype(data.dtype)),
    )
    fh.flush()
    fh.seek(0)
    return tifffile.TiffFile(fh)


def write_cog(
    path: Path,
    data: Any,
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
    Each level is encoded tile by tile into a temporary file beside ``path`` (removed
    at the end) and the levels are then copied into place tile by tile: memory holds a tile (a tile
    row of one band for ``BHW``), whatever the cube's size.

    Parameters
    ----------
    path : pathlib.Path
        Output file.
    data : numpy.ndarray or array-like
        ``(bands, H, W)``; or anything with ``shape``, ``dtype`` and ``[bands, rows,
        cols]`` slicing (a :class:`ras2s.io.CubeSource`, a raw array).
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
    with contextlib.ExitStack() as stack:
        pages = []
        for i, _ in enumerate(cog_levels((h, w), tile)):
            fh = stack.enter_context(
                tempfile.NamedTemporaryFile(dir=Path(path).parent, prefix=".ras2s-", suffix=".cog")
            )
            tif = stack.enter_context(
                _level(data, layout, tile, extratags, bigtiff, step=2**i, fh=fh)
            )
            pages.append((fh, tif.pages.first))
        _assemble(path, pages, bigtiff)


def _read(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def _assemble(path: Path, pages: list[tuple[BinaryIO, tifffile.TiffPage]], bigtiff: bool) -> None:
    """Write ``pages`` (full resolution first, each in its own file) in COG order to ``path``."""
    bo = "<"
    entry, count_fmt, next_fmt, inline = (20, "Q", "Q", 8) if bigtiff else (12, "H", "I", 4)
    offset_type = 16 if bigtiff else 4  # LONG8 / LONG
    header = 16 if bigtiff else 8
    ghost = _GHOST.encode("ascii")
    ghost = f"GDAL_STRUCTURAL_METADATA_SIZE={len(ghost):06d} bytes\n".encode("ascii") + ghost

    # each IFD's tags as (code, type, count, raw value bytes); tile offsets filled later
    ifds = []
    for fh, page in pages:
        tags = []
        for tag in sorted(page.tags.values(), key=lambda t: t.code):
            if tag.code in (_TILE_OFFSETS, _TILE_BYTECOUNTS):
                tags.append((tag.code, offset_type, len(page.dataoffsets), b""))
                continue
            size = tag.count * struct.calcsize(bo + tifffile.TIFF.DATA_FORMATS[tag.dtype])
            value = _read(fh, tag.valueoffset, size)
            tags.append((tag.code, int(tag.dtype), tag.count, value))
        tiles = list(zip(page.dataoffsets, page.databytecounts, strict=True))
        ifds.append((fh, tags, tiles))

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
    for _fh, tags, _tiles in ifds:
        ifd_pos.append(pos)
        pos += struct.calcsize(bo + count_fmt) + entry * len(tags) + struct.calcsize(bo + next_fmt)
        pos += out_of_line(tags)
        pos += pos & 1
    tile_offsets: list[list[int]] = [[] for _ in ifds]
    for i in reversed(range(len(ifds))):  # smallest overview first, full resolution last
        for _offset, count in ifds[i][2]:
            tile_offsets[i].append(pos + 4)  # after the 4-byte leader
            pos += 4 + count + min(4, count)

    with open(path, "wb") as out:
        if bigtiff:
            out.write(b"II" + struct.pack(bo + "HHHQ", 43, 8, 0, ifd_pos[0]))
        else:
            out.write(b"II" + struct.pack(bo + "HI", 42, ifd_pos[0]))
        out.write(ghost)
        for i, (_fh, tags, tiles) in enumerate(ifds):
            _pad_to(out, ifd_pos[i])
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
                        f"{bo}{count}{'Q' if bigtiff else 'I'}", *(n for _o, n in tiles)
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
            out.write(b"".join(head) + b"".join(values))
        for i in reversed(range(len(ifds))):
            fh, _tags, tiles = ifds[i]
            _pad_to(out, tile_offsets[i][0] - 4)
            for offset, count in tiles:
                t = _read(fh, offset, count)
                out.write(struct.pack(bo + "I", len(t)) + t + t[-4:])


def _pad_to(fh: BinaryIO, pos: int) -> None:
    here = fh.tell()
    if here > pos:  # pragma: no cover - a layout error, never user input
        raise RuntimeError(f"COG layout: at byte {here}, past {pos}")
    fh.write(b"\0" * (pos - here))
