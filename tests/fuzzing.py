"""Seeded mutation of cube files, for the fuzz tests (tests/test_fuzz_readers.py).

Each ``mutate_*`` takes the bytes of a valid file and a :class:`random.Random` and
returns a damaged copy: flipped bits, "interesting" integers written over header
fields (0, -1, 2**31 - 1, 2**63 - 1, ...), truncation, deleted or repeated chunks; ENVI
and .npy headers are also mutated as text (keys given huge, negative, fractional or
garbage values). :func:`read_outcome` reads one file under a time limit and a
``tracemalloc`` peak and says what happened.
"""

from __future__ import annotations

import random
import re
import signal
import struct
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from ras2s.errors import Ras2sError
from ras2s.io import read_cube

__all__ = ["Outcome", "mutate_bytes", "mutate_envi_header", "mutate_npy", "read_outcome"]

_INTS = (0, 1, 2, 3, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1)
_BIG = (2**63 - 1, 2**63, 2**64 - 1, 2**40, 2**48)
_WORDS = (
    "0", "-1", "1", "3", "-7", "2147483647", "4294967296", "99999999999999999999", "1e9",
    "0.5", "nan", "inf", "abc", "", "{", "}", "{1,2", "bsq", "bip", "bil", "xyz", "12", "15",
    "6", "9", "99",
)  # fmt: skip


def _interesting(rng: random.Random) -> bytes:
    value = rng.choice(_INTS + _BIG)
    size, fmt = rng.choice(((1, "B"), (2, "H"), (4, "I"), (8, "Q")))
    value %= 256**size
    return struct.pack(("<" if rng.random() < 0.5 else ">") + fmt, value)


def mutate_bytes(data: bytes, rng: random.Random, *, focus: int = 512) -> bytes:
    """1-4 random edits of ``data``, most of them in its first ``focus`` bytes."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        span = min(len(out), focus) if rng.random() < 0.8 else len(out)
        at = rng.randrange(span)
        op = rng.random()
        if op < 0.3:
            out[at] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            chunk = _interesting(rng)
            out[at : at + len(chunk)] = chunk
        elif op < 0.65:
            out[at] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op < 0.8:
            del out[rng.randrange(len(out)) :]  # truncated
        elif op < 0.9:
            del out[at : at + rng.randint(1, 16)]
        else:
            out[at:at] = out[at : at + rng.randint(1, 16)]
    return bytes(out)


def mutate_envi_header(text: str, rng: random.Random) -> str:
    """An ENVI header with values replaced, lines dropped or repeated, or bytes flipped."""
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(lines)) if lines else 0
        if op < 0.6 and lines and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {rng.choice(_WORDS)}"
        elif op < 0.7 and lines:
            del lines[i]
        elif op < 0.8 and lines:
            lines.insert(i, lines[i])
        else:
            raw = mutate_bytes("\n".join(lines).encode(), rng, focus=4096)
            lines = raw.decode("latin-1").splitlines()
    return "\n".join(lines) + "\n"


_DESCRS = (
    "'<f4'", "'<f8'", "'>i2'", "'|u1'", "'|O'", "'<U8'", "'|V8'", "'<c8'", "'|b1'",
    "'<m8'", "'<M8[s]'", "[('a', '<f4')]", "'<f16'", "'zz'", "'<i0'", "'<i99999999'", "1",
)  # fmt: skip
_SHAPES = (
    "(2, 3, 4)", "(3, 4, 2)", "()", "(0, 3, 4)", "(-1, 3, 4)", "(2**31, 2**31, 8)",
    "(9223372036854775807, 2, 2)", "(4294967296, 4294967296, 4294967296)", "(2, 3)",
    "(1, 1, 1, 1)", "(1.5, 2, 3)", "'x'", "(2, 3, 4", "[2, 3, 4]", "(99999, 99999, 99999)",
)  # fmt: skip


def mutate_npy(data: bytes, rng: random.Random) -> bytes:
    """An .npy file whose header dictionary (or raw bytes) is damaged."""
    if rng.random() < 0.4:
        return mutate_bytes(data, rng, focus=128)
    head_len = struct.unpack("<H", data[8:10])[0]
    header = data[10 : 10 + head_len].decode("latin-1")
    body = data[10 + head_len :]
    op = rng.random()
    if op < 0.4:
        header = re.sub(r"'descr': [^,]+,", f"'descr': {rng.choice(_DESCRS)},", header)
    elif op < 0.8:
        header = re.sub(r"'shape': \([^)]*\)", f"'shape': {rng.choice(_SHAPES)}", header)
    else:
        header = header.replace("False", rng.choice(("True", "1", "None", "'x'")))
    if rng.random() < 0.3:
        body = body[: rng.randrange(len(body) + 1)]
    encoded = header.encode("latin-1")
    length = len(encoded) if rng.random() < 0.9 else rng.choice((0, 1, 0xFFFF, len(encoded) + 9))
    return data[:8] + struct.pack("<H", length) + encoded + body


class Hang(BaseException):  # noqa: N818 - not an Exception: no reader may swallow it
    """A read ran past its time limit."""


@dataclass(frozen=True)
class Outcome:
    """What reading one mutated file did.

    ``kind``: ``"read"`` (a cube came back), ``"refused"`` (a one-line
    :class:`~ras2s.errors.Ras2sError`), or a failure: ``"multi-line"``, ``"hang"``,
    ``"memory"`` (a MemoryError behind the refusal: an allocation was tried that the
    file could not fill), ``"too-large"`` (the peak of traced allocations went past the
    bound), or the name of any other exception type.
    """

    kind: str
    detail: str = ""
    seconds: float = 0.0
    peak: int = 0

    @property
    def ok(self) -> bool:
        """True for a correct read or a one-line refusal."""
        return self.kind in ("read", "refused")


def _caused_by_memory(exc: BaseException) -> bool:
    from ras2s.io import _in_chain

    return _in_chain(exc, MemoryError)


def _alarm(signum, frame):
    raise Hang


def read_outcome(path: Path, *, bound: int, limit: float = 5.0, **kwargs) -> Outcome:
    """Read ``path`` with :func:`ras2s.io.read_cube` and classify what happened.

    ``bound``: the most bytes the read may allocate (traced by ``tracemalloc``, which
    sees numpy's buffers). ``limit``: seconds before the read counts as a hang (raised
    by SIGALRM as :class:`Hang`, which no reader's ``except Exception`` can swallow).
    """
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        cube = read_cube(path, **kwargs)
        kind, detail = "read", f"{cube.data.shape} {cube.data.dtype}"
        del cube
    except Hang:
        kind, detail = "hang", ""
    except Ras2sError as exc:
        text = str(exc)
        if _caused_by_memory(exc):
            kind, detail = "memory", text
        elif "\n" in text or not text:
            kind, detail = "multi-line", repr(text)
        else:
            kind, detail = "refused", text
    except Exception as exc:  # every other type is a failure of the test
        kind, detail = type(exc).__name__, str(exc)[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - base
    if kind in ("read", "refused") and peak > bound:
        kind, detail = "too-large", f"peak {peak} bytes > {bound} ({detail})"
    return Outcome(kind, detail, seconds, peak)
