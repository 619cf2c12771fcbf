"""Fuzzed headers and containers: a one-line Ras2sError or a correct read, nothing else.

A seeded mutation loop (tests/fuzzing.py) damages a small valid file of each format
1,000 times (ENVI headers as text and their data files, .npy header dictionaries and
bytes, TIFF tags and directory chains, MAT v5 and v7.3, HDF5) and reads each copy
with :func:`ras2s.io.read_cube`. Every outcome must be a read of a cube or a one-line
:class:`~ras2s.errors.Ras2sError` naming the file: never another exception type,
never a crash, never a hang (5 s limit per read), never an allocation larger than the
file could fill (a ``tracemalloc`` peak above 4 times the file plus 1 MiB, or a
MemoryError behind a refusal). ``RAS2S_FUZZ_CASES`` sets the count (the ``slow`` test
runs 20,000 per format).

What these loops found, each fixed and kept as a regression seed below: a segmentation
fault in scipy's MAT v5 reader (an element of type 0), 1.7 GB allocated for a 700-byte
MAT v4 header and 660 MB for an .npy header length field, and a TIFF whose directory
chain looped kept tifffile busy for minutes. Zarr stores (folders of JSON and chunk
files) are damaged by hand, one way of lying each.
"""

from __future__ import annotations

import collections
import json
import os
import random
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from ras2s.io import _write_mat73, write_cube

from .fuzzing import Outcome, mutate_bytes, mutate_envi_header, mutate_npy, read_outcome

CASES = int(os.environ.get("RAS2S_FUZZ_CASES", "1000"))
FORMATS = ("envi", "npy", "tiff", "mat", "mat73", "h5")


def _cube() -> np.ndarray:
    return (np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) / 7).astype(np.float32)


def _valid(folder: Path, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "mat73":  # the v7.3 writer is used only above 2 GiB: call it directly
        path = folder / "c.mat"
        _write_mat73(path, _cube(), "data")
        return path
    ext = {"envi": ".hdr", "npy": ".npy", "tiff": ".tif", "mat": ".mat", "h5": ".h5"}[fmt]
    return write_cube(folder / f"c{ext}", _cube())


def _mutant(fmt: str, valid: Path, target: Path, rng: random.Random) -> int:
    """Write a damaged copy of ``valid`` at ``target``; the bytes it holds in all."""
    raw = valid.read_bytes()
    if fmt == "envi":
        target.write_text(mutate_envi_header(raw.decode(), rng), encoding="latin-1")
        data = valid.with_suffix(".img").read_bytes()
        if rng.random() < 0.3:
            data = mutate_bytes(data, rng, focus=len(data))
        target.with_suffix(".img").write_bytes(data)
        return target.stat().st_size + len(data)
    if fmt == "npy":
        damaged = mutate_npy(raw, rng)
    else:  # HDF5 keeps its superblock and object headers in the first few KiB
        damaged = mutate_bytes(raw, rng, focus=4096 if fmt in ("h5", "mat73") else 512)
    target.write_bytes(damaged)
    return len(damaged)


def _fuzz(tmp_path: Path, fmt: str, cases: int, seed: int = 0) -> collections.Counter:
    valid = _valid(tmp_path / "valid", fmt)
    work = tmp_path / "work"
    work.mkdir()
    target = work / valid.name
    rng = random.Random(seed)
    outcomes: collections.Counter = collections.Counter()
    failures: list[tuple[int, Outcome]] = []
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for case in range(cases):
                size = _mutant(fmt, valid, target, rng)
                outcome = read_outcome(target, bound=4 * size + 2**20, layout="BHW")
                if outcome.kind == "refused" and target.stem not in outcome.detail:
                    outcome = Outcome("unnamed", outcome.detail)
                outcomes[outcome.kind] += 1
                if not outcome.ok:
                    failures.append((case, outcome))
    finally:
        tracemalloc.stop()
    assert not failures, f"{fmt}: {len(failures)} bad outcomes, first: {failures[:3]}"
    return outcomes


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_damaged_file_is_read_or_refused_in_one_line(tmp_path, fmt):
    outcomes = _fuzz(tmp_path, fmt, CASES)
    assert sum(outcomes.values()) == CASES
    assert outcomes["refused"] > CASES // 4  # the mutations do reach the parsers


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_damaged_file_is_read_or_refused_in_one_line_many_cases(tmp_path, fmt):
    outcomes = _fuzz(tmp_path, fmt, 20_000, seed=1)
    assert outcomes["refused"] > 5_000


# the first damaged copies that broke each reader before the checks of issue 25
# (seed 0 of the loop above: the case numbers are where each was found)
@pytest.mark.parametrize(
    ("fmt", "case"), [("mat", 327), ("npy", 211), ("npy", 856), ("tiff", 51), ("tiff", 310)]
)
def test_the_cases_that_broke_a_reader_are_refused(tmp_path, fmt, case):
    valid = _valid(tmp_path / "valid", fmt)
    target = tmp_path / valid.name
    rng = random.Random(0)
    for _ in range(case + 1):  # replay the loop's draws up to that case
        size = _mutant(fmt, valid, target, rng)
    tracemalloc.start()
    try:
        outcome = read_outcome(target, bound=4 * size + 2**20, layout="BHW")
    finally:
        tracemalloc.stop()
    assert outcome.kind == "refused", outcome


# a zarr store is a folder of small files: hostile stores made by hand, one per way of
# lying (the loop above mutates single files; a store's metadata is JSON)
def _zarr_json(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


ZARR_DAMAGE = {
    "truncated chunk": lambda d, c: c.write_bytes(c.read_bytes()[: len(c.read_bytes()) // 2]),
    "missing chunk": lambda d, c: c.unlink(),
    "chunk is a folder": lambda d, c: (c.unlink(), c.mkdir()),
    "shape grown": lambda d, c: _zarr_json(d / "zarr.json", shape=[4, 5, 4_000_000]),
    "shape negative": lambda d, c: _zarr_json(d / "zarr.json", shape=[-4, 5, 6]),
    "4-D": lambda d, c: _zarr_json(d / "zarr.json", shape=[1, 4, 5, 6]),
    "chunks grown": lambda d, c: _zarr_json(
        d / "zarr.json",
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": [4, 5, 6_000_000]}},
    ),
    "unknown dtype": lambda d, c: _zarr_json(d / "zarr.json", data_type="float128x"),
    "broken array json": lambda d, c: (d / "zarr.json").write_text('{"zarr_format": 3, "no'),
    "broken group json": lambda d, c: (d.parent / "zarr.json").write_text("\x00" * 40),
}


@pytest.mark.parametrize("damage", sorted(ZARR_DAMAGE))
def test_a_hostile_zarr_store_is_refused_in_one_line(tmp_path, damage):
    pytest.importorskip("zarr")
    store = write_cube(tmp_path / "c.zarr", _cube())
    read_outcome(store, bound=2**30)  # zarr's first read imports and starts its machinery
    array = store / "data"
    chunk = next(p for p in array.rglob("*") if p.is_file() and p.name != "zarr.json")
    ZARR_DAMAGE[damage](array, chunk)
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    tracemalloc.start()
    try:
        outcome = read_outcome(store, bound=4 * size + 2**20)
    finally:
        tracemalloc.stop()
    assert outcome.kind == "refused" and "c.zarr" in outcome.detail, outcome
