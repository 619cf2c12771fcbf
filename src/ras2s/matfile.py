"""Check the structure of a MATLAB v4 or v5 file before scipy parses it.

scipy's compiled MAT v5 reader trusts the file: an element tag of an unknown type (0,
say) in a numeric variable crashes the interpreter (a segmentation fault in
``_mio5_utils.read_var_array``, found by tests/test_fuzz_readers.py), and a data
element may declare more values than its dimensions hold. :func:`check_mat5` walks the
file's tags first, reading no data, and refuses what scipy could not read safely:

- every top-level element is ``miMATRIX`` or ``miCOMPRESSED`` and lies inside the file;
- every variable starts with its array flags (``miUINT32``, 8 bytes), dimensions
  (``miINT32``, at least two, none negative) and name (``miINT8``), each inside it;
- a numeric variable's real (and imaginary) part has a numeric type and exactly
  ``prod(dims) x size(type)`` bytes, inside the variable;
- a compressed variable declares at most 1032 times its compressed size (zlib's
  largest ratio); only its first 1 MiB is inflated to read its header.

A v4 file (:func:`check_mat4`) is a run of 20-byte headers, each followed by its name
and data; a header whose name or data runs past the end of the file is refused (scipy
would first allocate what it declares: 1.7 GB for a 700-byte file).

Layout: MATLAB's "MAT-File Format" (R2024a), chapter 1, "Level 5 MAT-File Format";
Level 4: the same document's "Level 4 MAT-File Format" appendix.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import zlib
from pathlib import Path

from .errors import InputError

__all__ = ["check_mat4", "check_mat5"]

# data types (MAT-File Format, table 1-1) -> bytes per value
_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_NUMERIC_TYPES = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13}
_MATRIX, _COMPRESSED = 14, 15
_NUMERIC_CLASSES = set(range(6, 16))  # mxDOUBLE_CLASS .. mxUINT64_CLASS
_COMPLEX = 0x0800
_HEAD = 2**20  # bytes of a compressed variable inflated to check its header
_ZLIB_RATIO = 1032


class _Bad(Exception):
    """A structural fault, worded for the message."""


def _tag(buf: bytes | memoryview, at: int, end: int, order: str) -> tuple[int, int, int]:
    """``(type, nbytes, data offset)`` of the tag at ``at``; the data must end by ``end``."""
    if at + 8 > end:
        raise _Bad(f"a tag at byte {at} runs past its element")
    if at + 8 > len(buf):  # a compressed variable's header beyond its inflated first MiB
        raise _Bad(f"a header at byte {at} is implausibly long")
    first, second = struct.unpack_from(order + "II", buf, at)
    if first >> 16:  # small data element: type and size packed in 4 bytes, data in 4
        kind, nbytes, data = first & 0xFFFF, first >> 16, at + 4
        if nbytes > 4:
            raise _Bad(f"a small element at byte {at} declares {nbytes} bytes (at most 4)")
    else:
        kind, nbytes, data = first, second, at + 8
    if data + nbytes > end:
        raise _Bad(f"an element at byte {at} declares {nbytes} bytes past the end")
    return kind, nbytes, data


def _next(data: int, nbytes: int, small: bool) -> int:
    return data + 4 if small else data + nbytes + (-nbytes % 8)


def _matrix(buf: bytes | memoryview, at: int, end: int, order: str) -> None:
    """Check the sub-elements of one variable (``buf[at:end]``, after its tag)."""
    if at == end:  # an empty miMATRIX: MATLAB writes these for empty cells
        return
    kind, nbytes, data = _tag(buf, at, end, order)
    if kind != 6 or nbytes != 8:
        raise _Bad(f"array flags at byte {at} are type {kind}, {nbytes} bytes (expected 6, 8)")
    if data + 8 > len(buf):
        raise _Bad(f"array flags at byte {at} lie beyond the inflated header")
    flags = struct.unpack_from(order + "I", buf, data)[0]
    cls = flags & 0xFF
    at = _next(data, nbytes, data == at + 4)
    kind, nbytes, data = _tag(buf, at, end, order)
    if kind != 5 or nbytes < 8 or nbytes % 4:
        raise _Bad(f"dimensions at byte {at} are type {kind}, {nbytes} bytes")
    if data + nbytes > len(buf):
        raise _Bad(f"{nbytes // 4} dimensions at byte {at}: implausibly many")
    dims = struct.unpack_from(f"{order}{nbytes // 4}i", buf, data)
    if min(dims) < 0:
        raise _Bad(f"negative dimensions {dims}")
    at = _next(data, nbytes, data == at + 4)
    kind, nbytes, data = _tag(buf, at, end, order)
    if kind != 1:
        raise _Bad(f"the variable name at byte {at} is type {kind} (expected 1, miINT8)")
    at = _next(data, nbytes, data == at + 4)
    if cls not in _NUMERIC_CLASSES:
        return  # never parsed beyond its header: ras2s reads numeric variables only
    for part in ("real", "imaginary")[: 2 if flags & _COMPLEX else 1]:
        kind, nbytes, data = _tag(buf, at, end, order)
        if kind not in _NUMERIC_TYPES:
            raise _Bad(f"the {part} part at byte {at} has data type {kind}, not a number type")
        count = math.prod(dims)
        if nbytes != count * _SIZES[kind]:
            raise _Bad(
                f"the {part} part holds {nbytes} bytes, not the {count} values of "
                f"{'x'.join(map(str, dims))}"
            )
        at = _next(data, nbytes, data == at + 4)


def _compressed(buf: memoryview, at: int, nbytes: int, order: str) -> None:
    """Check the header of a compressed variable, inflating at most its first MiB."""
    try:
        head = zlib.decompressobj().decompress(buf[at : at + nbytes], _HEAD)
    except zlib.error as exc:
        raise _Bad(f"a compressed variable at byte {at - 8} does not inflate ({exc})") from None
    if len(head) < 16:
        raise _Bad(f"a compressed variable at byte {at - 8} is truncated")
    kind, inner, data = _tag(head, 0, 2**63, order)
    if kind != _MATRIX:
        raise _Bad(f"a compressed variable at byte {at - 8} holds type {kind}, not a matrix")
    if inner > _ZLIB_RATIO * nbytes:
        raise _Bad(f"a compressed variable declares {inner} bytes from {nbytes} compressed")
    if len(head) < data + inner and len(head) < _HEAD:
        raise _Bad(f"a compressed variable at byte {at - 8} is truncated")
    _matrix(head, data, data + inner, order)  # tags read within head, bounded by inner


def check_mat5(path: str | Path) -> None:
    """Refuse a MAT v5 file whose element structure scipy could not read safely.

    Reads the tags only, through a memory map (and inflates the first MiB of each
    compressed variable).

    Raises
    ------
    InputError
        Naming the file and the first fault found.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 128:
            raise InputError(f"{path}: MAT-file header is truncated ({size} of 128 bytes)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                _check(path, view)
            finally:
                view.release()


def _check(path: Path, buf: memoryview) -> None:
    order = {b"IM": "<", b"MI": ">"}.get(bytes(buf[126:128]))
    if order is None:
        raise InputError(
            f"{path}: MAT-file endian indicator {bytes(buf[126:128])!r} is not IM or MI"
        )
    at, end = 128, len(buf)
    try:
        while at + 8 <= end:
            kind, nbytes, data = _tag(buf, at, end, order)
            if kind == _MATRIX:
                _matrix(buf, data, data + nbytes, order)
            elif kind == _COMPRESSED:
                _compressed(buf, data, nbytes, order)
            else:
                raise _Bad(f"a top-level element at byte {at} is type {kind}, not a variable")
            at = data + nbytes
    except _Bad as exc:
        raise InputError(
            f"{path}: not a valid MAT v5 file ({exc}); it is corrupt or truncated"
        ) from None


# v4 precision digit P of MOPT -> bytes per value (double, single, int32, int16, uint16, uint8)
_V4_SIZES = {0: 8, 1: 4, 2: 4, 3: 2, 4: 2, 5: 1}


def check_mat4(path: str | Path) -> None:
    """Refuse a MAT v4 file whose headers declare names or data past its end.

    Raises
    ------
    InputError
        Naming the file and the first variable at fault.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size
        at = 0
        while at < end:
            fh.seek(at)
            head = fh.read(20)
            if len(head) < 20:
                raise InputError(f"{path}: MAT v4 header at byte {at} is truncated")
            for order in "<>":
                mopt, rows, cols, imag, namlen = struct.unpack(order + "5i", head)
                if 0 <= mopt < 5000 and (mopt // 10) % 10 in _V4_SIZES:
                    break
            else:
                raise InputError(f"{path}: not a MAT v4 variable header at byte {at}")
            size = _V4_SIZES[(mopt // 10) % 10] * (2 if imag else 1)
            if min(rows, cols, namlen) < 0 or imag not in (0, 1):
                raise InputError(f"{path}: MAT v4 header at byte {at} is corrupt")
            need = 20 + namlen + rows * cols * size
            if at + need > end:
                raise InputError(
                    f"{path}: MAT v4 variable at byte {at} declares {need:,} bytes, past the "
                    f"end of the file ({end:,} bytes); it is truncated or its header is wrong"
                )
            at += need
