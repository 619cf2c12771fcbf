"""Walk a TIFF's chain of image file directories (IFDs) before tifffile reads it.

Each IFD ends with the offset of the next one. tifffile follows the chain to list the
pages of a series; with a mutated offset that leads back into the chain it went on
for tens of thousands of pages (seconds, then minutes) in a 700-byte file (found by
tests/test_fuzz_readers.py). :func:`check_tiff_chain` follows the offsets itself,
reading 2 + 12 n (classic) or 8 + 20 n (BigTIFF) bytes per IFD, and refuses a chain that
revisits an offset, leaves the file, or holds more IFDs than the file could.

Layout: TIFF 6.0 specification, section 2 ("Image File Directory"); BigTIFF: the
same with 8-byte counts and offsets and 20-byte entries.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from .errors import InputError

__all__ = ["check_tiff_chain"]


def check_tiff_chain(path: str | os.PathLike) -> int:
    """The number of IFDs of the TIFF ``path``; InputError for a chain that loops or leaves.

    A file too short or without a TIFF byte-order mark is left to tifffile (which
    refuses it with its own message).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(16)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8:
            return 0
        magic = struct.unpack(order + "H", head[2:4])[0]
        if magic == 43 and len(head) >= 16:  # BigTIFF
            count_fmt, offset_fmt, entry, offset = (
                "Q",
                "Q",
                20,
                struct.unpack(order + "Q", head[8:16])[0],
            )
        elif magic == 42:
            count_fmt, offset_fmt, entry, offset = (
                "H",
                "I",
                12,
                struct.unpack(order + "I", head[4:8])[0],
            )
        else:
            return 0
        count_size, offset_size = struct.calcsize(count_fmt), struct.calcsize(offset_fmt)
        seen: set[int] = set()
        while offset:
            if offset in seen:
                raise InputError(
                    f"{path}: TIFF directory chain loops back to byte {offset}; the file is corrupt"
                )
            seen.add(offset)
            fh.seek(offset)
            raw = fh.read(count_size)
            if len(raw) < count_size:
                break  # an offset past the end: tifffile stops there too
            count = struct.unpack(order + count_fmt, raw)[0]
            end = offset + count_size + count * entry
            if end + offset_size > size:
                break  # a directory past the end: tifffile reports it
            fh.seek(end)
            offset = struct.unpack(order + offset_fmt, fh.read(offset_size))[0]
            if len(seen) > size // (count_size + offset_size):
                raise InputError(f"{path}: more TIFF directories than the file can hold")
    return len(seen)
