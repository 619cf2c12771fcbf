"""Datasets per open file (ras2s.io.open_cube / create_cube) and zarr as a format.

Windowed reads equal the whole read for every format; a windowed write equals
write_cube byte for byte; an aborted output leaves nothing; whole-file formats are
refused over the budget; zarr round trips its metadata; reading a large .npy window by
window keeps the resident memory to a window's.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from spectral.io import envi

import ras2s.io as rio
from ras2s.errors import InputError, LayoutError, OutputError
from ras2s.io import (
    CubeSource,
    bad_bands,
    check_output,
    create_cube,
    cube_nodata,
    default_output_path,
    expand_inputs,
    find_cubes,
    open_cube,
    read_cube,
    sha256_file,
    write_cube,
)

SRC = Path(__file__).resolve().parents[1] / "src"
SHAPE = (6, 40, 40)  # bands, H, W: the layout rule reads it either way round


def _cube(dtype=np.uint16, shape=SHAPE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, shape).astype(dtype)


def _windows(rng, shape, n=6):
    """Random (bands, rows, cols) slices, some with steps, one empty, one whole."""
    bands, h, w = shape
    out = [(slice(None), slice(None), slice(None)), (slice(2, 2), slice(None), slice(None))]
    for _ in range(n):
        r0, c0 = rng.integers(0, h - 1), rng.integers(0, w - 1)
        r1, c1 = rng.integers(r0 + 1, h + 1), rng.integers(c0 + 1, w + 1)
        b0 = rng.integers(0, bands)
        b1 = rng.integers(b0 + 1, bands + 1)
        step = int(rng.integers(1, 3))
        out.append((slice(b0, b1), slice(r0, r1, step), slice(c0, c1)))
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".ras2s-"))


# ------------------------------------------------------------------- files to read


def _mat73(path: Path, hwb: np.ndarray) -> None:
    with h5py.File(path, "w", userblock_size=512) as f:
        ds = f.create_dataset("cube", data=hwb.T)  # MATLAB column-major: reversed axes
        ds.attrs["MATLAB_class"] = np.bytes_("uint16")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116, b" ") + b"\0" * 8 + b"\0\x02IM")


def _envi(path: Path, data: np.ndarray, interleave: str) -> None:
    envi.save_image(str(path), data.transpose(1, 2, 0), interleave=interleave, ext=".img")


def _tiff(path: Path, data: np.ndarray, layout: str, **kwargs) -> None:
    if layout == "HWB":
        tifffile.imwrite(path, data.transpose(1, 2, 0), photometric="minisblack",
                         planarconfig="contig", metadata={"axes": "YXS"}, **kwargs)  # fmt: skip
    else:
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate",
                         metadata={"axes": "SYX"}, **kwargs)  # fmt: skip


WINDOWED = {
    "npy-BHW": lambda p, a: np.save(p.with_suffix(".npy"), a),
    "npy-HWB": lambda p, a: np.save(p.with_suffix(".npy"), a.transpose(1, 2, 0)),
    "npy-fortran": lambda p, a: np.save(p.with_suffix(".npy"), np.asfortranarray(a)),
    "npy-bigendian": lambda p, a: np.save(p.with_suffix(".npy"), a.astype(">u2")),
    "h5-BHW": lambda p, a: write_cube(p.with_suffix(".h5"), a),
    "h5-HWB": lambda p, a: write_cube(p.with_suffix(".h5"), a, layout="HWB"),
    "mat73": lambda p, a: _mat73(p.with_suffix(".mat"), a.transpose(1, 2, 0)),
    "envi-bsq": lambda p, a: _envi(p.with_suffix(".hdr"), a, "bsq"),
    "envi-bil": lambda p, a: _envi(p.with_suffix(".hdr"), a, "bil"),
    "envi-bip": lambda p, a: _envi(p.with_suffix(".hdr"), a, "bip"),
    "tiff-BHW": lambda p, a: _tiff(p.with_suffix(".tif"), a, "BHW"),
    "tiff-HWB-strips": lambda p, a: _tiff(p.with_suffix(".tif"), a, "HWB", rowsperstrip=7),
    "tiff-bigendian": lambda p, a: _tiff(p.with_suffix(".tif"), a.astype(">u2"), "BHW"),
    "tiff-tiled-deflate": lambda p, a: _tiff(
        p.with_suffix(".tif"), a, "BHW", tile=(16, 16), compression="zlib", predictor=2
    ),
    "tiff-HWB-deflate-strips": lambda p, a: _tiff(
        p.with_suffix(".tif"), a, "HWB", compression="zlib", rowsperstrip=5
    ),
    "zarr": lambda p, a: write_cube(p.with_suffix(".zarr"), a),
}
WHOLE = {
    "mat5": lambda p, a: scipy.io.savemat(p.with_suffix(".mat"), {"x": a.transpose(1, 2, 0)}),
    "npz": lambda p, a: np.savez(p.with_suffix(".npz"), x=a),
    "png": lambda p, a: write_cube(p, a.astype(np.uint8)),
}


def _made(tmp_path: Path, kind: str, data: np.ndarray) -> Path:
    stem = tmp_path / kind
    (WINDOWED | WHOLE)[kind](stem, data)
    found = [p for p in tmp_path.iterdir() if p.name.startswith(kind) and p.suffix != ".img"]
    return found[0]


@pytest.mark.parametrize("kind", sorted(WINDOWED))
def test_windowed_reads_equal_the_whole_read(tmp_path, rng, kind):
    data = _cube()
    path = _made(tmp_path, kind, data)
    whole = read_cube(path)
    np.testing.assert_array_equal(whole.data, data)
    with open_cube(path) as src:
        assert src.windowed, src
        assert (src.shape, src.dtype, src.layout) == (data.shape, data.dtype, whole.layout)
        assert (src.format, src.key, src.nbytes) == (whole.format, whole.key, data.nbytes)
        assert src.metadata.keys() == whole.metadata.keys()
        for b, r, c in _windows(rng, data.shape):
            got = src.read((r, c), bands=b)
            assert got.flags.c_contiguous and got.flags.writeable and got.dtype.isnative
            np.testing.assert_array_equal(got, data[b, r, c])
            np.testing.assert_array_equal(src[b, r, c], data[b, r, c])
        np.testing.assert_array_equal(src[3, 5], data[3, 5])  # ints drop axes, as numpy
        np.testing.assert_array_equal(src[..., 7], data[..., 7])
        np.testing.assert_array_equal(src.read(((2, 9), (30, 40))), data[:, 2:9, 30:40])
    with pytest.raises(ValueError, match="closed"):
        src.read()


@pytest.mark.parametrize("kind", sorted(WHOLE))
def test_whole_file_formats_are_read_on_open(tmp_path, rng, kind):
    data = _cube(np.uint8)
    path = _made(tmp_path, kind, data)
    with open_cube(path, layout="BHW" if kind == "npz" else None) as src:
        assert not src.windowed
        for b, r, c in _windows(rng, data.shape, n=3):
            np.testing.assert_array_equal(src.read((r, c), bands=b), data[b, r, c])
        block = src.read()
        block[:] = 0  # a new array: the source's copy is untouched
        np.testing.assert_array_equal(src.read(), data)


def test_open_cube_applies_every_check_of_read_cube(tmp_path):
    np.save(tmp_path / "amb.npy", np.zeros((4, 5, 6), np.float32))
    with pytest.raises(LayoutError, match="amb.npy: cannot tell the spectral axis"):
        open_cube(tmp_path / "amb.npy")
    assert open_cube(tmp_path / "amb.npy", layout="hwb").shape == (6, 4, 5)
    (tmp_path / "short.npy").write_bytes(open_npy_header((50, 50, 50)) + b"\0" * 100)
    with pytest.raises(InputError, match=r"short.npy: its header declares \(50, 50, 50\)"):
        open_cube(tmp_path / "short.npy")
    np.save(tmp_path / "flat.npy", np.zeros((5, 6), np.float32))
    with pytest.raises(InputError, match="is 2-D"):
        open_cube(tmp_path / "flat.npy")
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="holds pickled objects"):
        open_cube(tmp_path / "obj.npy")
    with pytest.raises(InputError, match="no such file"):
        open_cube(tmp_path / "missing.hdr")


def open_npy_header(shape) -> bytes:
    import io

    buf = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def test_a_damaged_window_is_one_line_naming_the_file(tmp_path):
    data = _cube()
    path = tmp_path / "t.tif"
    _tiff(path, data, "BHW", tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages.first.dataoffsets[-1]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16  # the last tile no longer inflates
    path.write_bytes(bytes(raw))
    with open_cube(path) as src:
        np.testing.assert_array_equal(src.read((slice(0, 16), slice(0, 16))), data[:, :16, :16])
        with pytest.raises(InputError, match=r"t\.tif: cannot read as tiff") as err:
            src.read()
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------- sinks


def _like_inputs(tmp_path: Path, data: np.ndarray) -> dict:
    """Inputs whose form and metadata an output keeps (TIFF form, ENVI header, PNG names)."""
    _tiff(tmp_path / "tiled.tif", data, "BHW", tile=(16, 16), compression="zlib", predictor=2)
    _tiff(tmp_path / "strips.tif", data, "HWB", compression="zlib", predictor=2, rowsperstrip=3)
    meta = {
        "wavelength": [str(400 + 10 * i) for i in range(data.shape[0])],
        "bbl": ["1", "0", "1", "1", "1", "1"],
        "data ignore value": "0",
        "map info": "{UTM, 1, 1, 500000, 4000000, 30, 30, 33, North, WGS-84}",
    }
    envi.save_image(str(tmp_path / "in.hdr"), data.transpose(1, 2, 0), interleave="bil",
                    metadata=meta, ext=".img")  # fmt: skip
    return {
        name: read_cube(tmp_path / name) for name in ("tiled.tif", "strips.tif", "in.hdr")
    }


def _files(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
                if p.is_file()}  # fmt: skip
    out = {path.suffix: path.read_bytes()}
    if path.suffix == ".hdr":
        out[".img"] = path.with_suffix(".img").read_bytes()
    return out


SINKS = [
    ("c.npy", None, {}),
    ("c.npy", None, {"layout": "HWB"}),
    ("c.npz", None, {}),
    ("c.h5", None, {"key": "group/cube"}),
    ("c.mat", None, {}),
    ("c.tif", None, {}),
    ("c.tif", "tiled.tif", {}),
    ("c.tif", "strips.tif", {}),
    ("c.tif", "tiled.tif", {"cog": True}),
    ("c.hdr", None, {}),
    ("c.hdr", "in.hdr", {}),
    ("c.zarr", "in.hdr", {}),
    ("c_png", None, {}),
]


@pytest.mark.parametrize(("name", "like", "options"), SINKS)
def test_windowed_writes_equal_write_cube(tmp_path, rng, name, like, options):
    data = _cube(np.uint8 if name.endswith("png") else np.uint16)
    like_file = _like_inputs(tmp_path, data)[like] if like else None
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = write_cube(tmp_path / "a" / name, data, like=like_file, **options)
    sink = create_cube(tmp_path / "b" / name, data.shape, data.dtype, like=like_file, **options)
    with sink:
        assert sink.windowed == (Path(name).suffix not in (".npz", ".mat", ""))
        rows = np.sort(rng.choice(np.arange(1, 40), 3, replace=False))
        for r0, r1 in zip([0, *rows], [*rows, 40], strict=True):  # strips, then two halves
            for c0, c1 in ((0, 17), (17, 40)):
                sink.write((slice(r0, r1), slice(c0, c1)), data[:, r0:r1, c0:c1])
        assert _leftovers(tmp_path / "b")  # the output is still a temporary
    assert sink.commit() == tmp_path / "b" / name  # a second commit is a no-op
    windowed = tmp_path / "b" / name
    assert _leftovers(tmp_path) == []
    a, b = read_cube(whole), read_cube(windowed)
    np.testing.assert_array_equal(b.data, data)
    assert (a.format, a.key, a.layout) == (b.format, b.key, b.layout)
    same_meta = {k: v for k, v in a.metadata.items() if k not in ("data file", "header")}
    assert same_meta == {k: v for k, v in b.metadata.items() if k not in ("data file", "header")}
    if name.endswith((".npy", ".tif", ".hdr", ".npz", "png")):
        assert _files(whole) == _files(windowed)  # byte for byte


def test_mat_v73_sink_matches_write_cube(tmp_path, monkeypatch):
    monkeypatch.setattr(rio.mat, "_MAT73_THRESHOLD", 0)
    data = _cube()
    whole = write_cube(tmp_path / "a.mat", data, key="NRD")
    with create_cube(tmp_path / "b.mat", data.shape, data.dtype, key="NRD") as sink:
        assert sink.windowed
        for r in range(0, 40, 16):
            sink.write((slice(r, r + 16), slice(None)), data[:, r : r + 16])
    a, b = read_cube(whole), read_cube(tmp_path / "b.mat")
    assert a.metadata["mat_version"] == b.metadata["mat_version"] == "7.3"
    np.testing.assert_array_equal(b.data, data)
    with h5py.File(tmp_path / "b.mat") as f:
        assert f["NRD"].attrs["MATLAB_class"] == b"uint16"


@pytest.mark.parametrize("name", ["c.npy", "c.h5", "c.tif", "c.hdr", "c.zarr", "c_png", "c.mat"])
@pytest.mark.parametrize("how", ["error", "interrupt", "abort"])
def test_an_aborted_output_leaves_nothing(tmp_path, name, how):
    data = _cube(np.uint8)
    old = write_cube(tmp_path / name, data[::-1].copy())
    before = _files(old)
    for force in (True, False):
        target = tmp_path / name if force else tmp_path / ("new_" + name)
        sink = create_cube(target, data.shape, data.dtype, like=None, force=force)
        if how == "abort":
            sink.write((slice(0, 20), slice(None)), data[:, :20])
            sink.abort()
            sink.abort()
        else:
            kind = RuntimeError if how == "error" else KeyboardInterrupt
            with pytest.raises(kind), sink:
                sink.write((slice(0, 20), slice(None)), data[:, :20])
                raise kind("stop")
        with pytest.raises(ValueError, match="aborted"):
            sink.write(None, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in [old, *([old.with_suffix(".img")] if name.endswith(".hdr") else [])]
    )
    assert _files(old) == before


def test_a_sink_checks_blocks_and_refuses_what_write_cube_refuses(tmp_path):
    with pytest.raises(OutputError, match="cannot write an array of shape"):
        create_cube(tmp_path / "x.npy", (0, 4, 4), np.float32)
    with pytest.raises(OutputError, match="PNG holds only uint8 or uint16"):
        create_cube(tmp_path / "x", (2, 4, 4), np.float32)
    with pytest.raises(OutputError, match="needs a .tif"):
        create_cube(tmp_path / "x.npy", (2, 4, 4), np.float32, cog=True)
    with create_cube(tmp_path / "x.npy", (2, 4, 4), np.float32) as sink:
        with pytest.raises(ValueError, match=r"block of shape \(2, 4, 4\) for a window"):
            sink.write((slice(0, 2), slice(None)), np.zeros((2, 4, 4), np.float32))
        with pytest.raises(ValueError, match="dtype float64 for an output of dtype float32"):
            sink.write(None, np.zeros((2, 4, 4)))
        sink.write(None, np.ones((2, 4, 4), np.uint8))  # a safe cast is fine
        sink.write((slice(1, 3), slice(None)), np.full((1, 2, 4), 5, np.float32), bands=slice(1, 2))
    got = read_cube(tmp_path / "x.npy", layout="BHW").data
    assert got.sum() == 32 - 8 + 40 and (got[1, 1:3] == 5).all()
    with pytest.raises(OutputError, match="already exists"):
        create_cube(tmp_path / "x.npy", (2, 4, 4), np.float32)


def test_budget_refuses_whole_file_formats_up_front(tmp_path, monkeypatch):
    data = _cube(np.uint8)
    scipy.io.savemat(tmp_path / "v5.mat", {"x": data.transpose(1, 2, 0)})
    write_cube(tmp_path / "bands", data)
    np.savez(tmp_path / "a.npz", x=data)
    write_cube(tmp_path / "ok.npy", data)
    budget = data.nbytes - 1
    for path, what in [
        (tmp_path / "v5.mat", "a MATLAB v5 file"),
        (tmp_path / "bands", "a folder of 6 band PNGs"),
        (tmp_path / "a.npz", "an .npz array"),
    ]:
        with pytest.raises(InputError) as err:
            open_cube(path, layout="BHW" if path.suffix == ".npz" else None, max_bytes=budget)
        text = str(err.value)
        assert text.startswith(f"{path}: {what} must be read whole ({data.nbytes:,} bytes)")
        assert f"memory budget of {budget:,} bytes" in text
        assert "MATLAB -v7.3, .npy, ENVI or .zarr" in text and "\n" not in text
    assert open_cube(tmp_path / "ok.npy", layout="BHW", max_bytes=10).windowed
    _tiff(tmp_path / "t.tif", data, "BHW", compression="zlib")
    assert open_cube(tmp_path / "t.tif", max_bytes=10).windowed  # through tifffile's zarr store
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "zarr", None)  # without zarr a compressed TIFF is read whole
        with pytest.raises(InputError, match=r"t\.tif: this TIFF must be read whole"):
            open_cube(tmp_path / "t.tif", max_bytes=budget)
        assert not open_cube(tmp_path / "t.tif").windowed
    for name in ("out.npz", "out_png"):
        with pytest.raises(OutputError, match="written whole from memory.*window by window"):
            create_cube(tmp_path / name, data.shape, data.dtype, max_bytes=budget)
    # a .mat output over the budget is written as MATLAB 7.3, window by window
    with create_cube(tmp_path / "out.mat", data.shape, data.dtype, max_bytes=budget) as sink:
        assert sink.windowed
        sink.write(None, data)
    assert read_cube(tmp_path / "out.mat").metadata["mat_version"] == "7.3"
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------- zarr


def test_zarr_round_trip_keeps_the_metadata(tmp_path):
    data = _cube()
    like = _like_inputs(tmp_path, data)["in.hdr"]
    out = write_cube(tmp_path / "c.zarr", data, like=like)
    got = read_cube(out)
    assert (got.format, got.key, got.layout) == ("zarr", "data", "BHW")
    np.testing.assert_array_equal(got.data, data)
    assert got.metadata["wavelength"] == [400.0 + 10 * i for i in range(6)]
    assert got.metadata["chunks"] == (6, 40, 40)
    assert cube_nodata(got) == 0.0 and bad_bands(got) == [1]
    back = read_cube(write_cube(tmp_path / "back.hdr", data, like=got))  # zarr -> ENVI
    assert [float(w) for w in back.metadata["wavelength"]] == got.metadata["wavelength"]
    assert cube_nodata(back) == 0.0 and bad_bands(back) == [1]
    meta = json.loads((out / "data" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["band", "y", "x"]
    # zarr -> zarr keeps the attributes; NaN nodata survives as text
    nan_like = rio.CubeFile(None, out, "zarr", "data", "BHW", {"nodata": "nan", "bbl": [1] * 6},
                            shape=data.shape, dtype=data.dtype)  # fmt: skip
    again = read_cube(write_cube(tmp_path / "d.zarr", data.astype(np.float32), like=nan_like))
    assert np.isnan(cube_nodata(again)) and again.metadata["bbl"] == [1] * 6
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(out)
    assert ds["data"].dims == ("band", "y", "x")
    np.testing.assert_array_equal(ds["data"].values, data)


def test_zarr_chunks_groups_keys_and_layout(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = _cube(shape=(70, 300, 260))
    out = write_cube(tmp_path / "big.zarr", data)
    with open_cube(out) as src:
        assert src.metadata["chunks"] == (64, 256, 256)
        np.testing.assert_array_equal(src[60:70, 250:300, 0:10], data[60:70, 250:300, 0:10])
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    group.create_array("a/cube", shape=(8, 8, 5), dtype="f4")[:] = 1
    group.create_array("b", shape=(8, 8, 5), dtype="f4")[:] = 2
    group.create_array("map", shape=(8, 8), dtype="f4")[:] = 0
    with pytest.raises(InputError, match="several 3-D arrays.*pass --key"):
        open_cube(tmp_path / "two.zarr")
    got = read_cube(tmp_path / "two.zarr", key="/a/cube")
    assert (got.key, got.layout, got.data.shape) == ("a/cube", "HWB", (5, 8, 8))
    assert read_cube(tmp_path / "two.zarr", key="b").data.max() == 2
    bare = zarr.open_array(str(tmp_path / "bare.zarr"), mode="w", shape=(31, 16, 16), dtype="u2")
    bare[:] = 3
    got = read_cube(tmp_path / "bare.zarr")
    assert (got.key, got.layout, got.data.shape) == (None, "BHW", (31, 16, 16))


@pytest.mark.parametrize("damage", ["chunk", "metadata", "no-chunks", "not-a-store", "a-file"])
def test_a_damaged_zarr_is_one_line(tmp_path, damage):
    out = write_cube(tmp_path / "c.zarr", _cube())
    chunk = next(p for p in (out / "data").rglob("*") if p.is_file() and p.name != "zarr.json")
    if damage == "chunk":
        chunk.write_bytes(chunk.read_bytes()[:10])
        match = "cannot read as zarr"
    elif damage == "metadata":
        (out / "data" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "arr')
        match = "cannot read as zarr|no 3-D numeric array"
    elif damage == "no-chunks":
        for p in [p for p in (out / "data").rglob("*") if p.is_file() and p.name != "zarr.json"]:
            p.unlink()
        match = r"only 0 of its 1 chunks are stored; the store is incomplete \(sparse"
    elif damage == "not-a-store":
        for p in out.rglob("zarr.json"):
            p.unlink()
        match = "cannot read as zarr"
    else:
        out = tmp_path / "f.zarr"
        out.write_bytes(b"PK")
        match = "a .zarr cube must be a folder"
    with pytest.raises(InputError, match=match) as err:
        read_cube(out)
    assert "\n" not in str(err.value) and str(out) in str(err.value)


def test_zarr_is_found_named_and_replaced_like_a_png_folder(tmp_path):
    data = _cube()
    folder = tmp_path / "scenes"
    folder.mkdir()
    store = write_cube(folder / "a.zarr", data)
    (folder / "sub").mkdir()
    write_cube(folder / "sub" / "b.npy", data)
    assert find_cubes(folder) == [store, folder / "sub" / "b.npy"]
    assert find_cubes(folder, recursive=False) == [store]
    assert expand_inputs([store]) == [store]
    assert expand_inputs([folder], recursive=True) == [store, folder / "sub" / "b.npy"]
    assert default_output_path(store) == folder / "a_denoised.zarr"
    assert len(sha256_file(store)) == 64
    with pytest.raises(OutputError, match="already exists"):
        check_output(store, data.dtype)
    assert check_output(store, data.dtype, force=True) == "zarr"
    write_cube(store, data + 1, force=True)  # swapped in whole
    np.testing.assert_array_equal(read_cube(store).data, data + 1)
    (tmp_path / "plain.zarr").mkdir()
    (tmp_path / "plain.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a zarr store; refusing to replace"):
        check_output(tmp_path / "plain.zarr", data.dtype, force=True)
    assert _leftovers(tmp_path) == []


def test_zarr_missing_says_how_to_install(tmp_path, monkeypatch):
    write_cube(tmp_path / "c.zarr", _cube())
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr raises ImportError
    with pytest.raises(InputError, match=r"zarr is not installed: pip install 'ras2s\[scale\]'"):
        read_cube(tmp_path / "c.zarr")
    with pytest.raises(OutputError, match=r"zarr is not installed: pip install 'ras2s\[scale\]'"):
        write_cube(tmp_path / "d.zarr", _cube())
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------- memory

_READER = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from ras2s.io import create_cube, open_cube

    def rss():  # peak resident memory of this process so far, bytes (Linux: KiB)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    src_path, out_path = sys.argv[1], sys.argv[2]
    start = rss()
    total = 0
    with open_cube(src_path) as src, create_cube(out_path, src.shape, src.dtype) as sink:
        rows = 16
        for r in range(0, src.shape[1], rows):
            block = src.read((slice(r, r + rows), slice(None)))
            total += int(block.sum(dtype=np.int64))
            sink.write((slice(r, r + rows), slice(None)), block)
            del block
    print(json.dumps({"start": start, "peak": rss(), "total": total}))
    """
)


def test_reading_a_large_npy_window_by_window_keeps_memory_to_a_window(tmp_path):
    """A 200 MB .npy, read and written back 16 rows at a time: peak RSS far below 200 MB."""
    shape = (100, 1000, 1000)  # uint16: 200 MB
    path = tmp_path / "big.npy"
    expected = 0
    with open(path, "wb") as fh:
        header = {"descr": "<u2", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(fh, header)
        band = (np.arange(shape[1] * shape[2], dtype=np.int64) % 1000).astype(np.uint16)
        for b in range(shape[0]):
            fh.write((band + b).tobytes())
            expected += int(band.sum(dtype=np.int64)) + b * band.size
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    run = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "out.npy")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout)
    assert got["total"] == expected
    size = path.stat().st_size
    grown = got["peak"] - got["start"]
    assert grown < size / 8, f"peak RSS grew by {grown:,} bytes reading a {size:,}-byte file"
    assert (tmp_path / "out.npy").read_bytes() == path.read_bytes()


def test_a_cube_source_is_an_array_for_window_readers(tmp_path):
    data = _cube()
    write_cube(tmp_path / "c.h5", data)
    with open_cube(tmp_path / "c.h5") as src:
        assert isinstance(src, CubeSource) and src.ndim == 3
        like = src.cube_file()
        assert like.data is None and like.shape == data.shape and like.dtype == data.dtype
        out = write_cube(tmp_path / "d.h5", data, like=src.cube_file(src.read()))
        with pickle.loads(pickle.dumps(src)) as copy:  # what a dask worker gets: reopened
            np.testing.assert_array_equal(copy[:, 5:9], data[:, 5:9])
    assert read_cube(out).key == "data"
    assert "closed" in repr(src)


def test_a_narrow_window_of_long_rows_reads_its_runs_not_whole_rows(tmp_path, monkeypatch):
    """Rows of 18 KB, windows of 64 px: one call per run (not 280x the bytes)."""
    import ras2s.io.raw as raw

    data = np.arange(3 * 12 * 9000, dtype=np.uint16).reshape(3, 12, 9000)
    np.save(tmp_path / "wide.npy", data)
    sizes = []
    real = raw._pread_into
    monkeypatch.setattr(
        raw, "_pread_into", lambda fd, buf, at: sizes.append(len(buf)) or real(fd, buf, at)
    )
    with open_cube(tmp_path / "wide.npy", layout="BHW") as src:
        for rows, cols in ((slice(2, 9), slice(100, 164)), (slice(0, 12, 5), slice(8936, 9000))):
            sizes.clear()
            np.testing.assert_array_equal(src.read((rows, cols)), data[:, rows, cols])
            assert max(sizes) == 64 * 2  # each run by itself
        sizes.clear()
        np.testing.assert_array_equal(src.read((slice(1, 4), slice(0, 9000, 3))), data[:, 1:4, ::3])
        assert max(sizes) >= 9000 * 2  # a stepped window: whole rows, then cut
