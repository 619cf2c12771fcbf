"""Tests of ras2s.io: formats, layout rule, key selection, errors, atomic writes."""

from __future__ import annotations

import builtins
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image
from spectral.io import envi

import ras2s.io as rio
from ras2s.errors import InputError, LayoutError, OutputError
from ras2s.io import (
    FORMATS,
    CubeFile,
    default_output_path,
    detect_layout,
    is_png_cube_folder,
    read_cube,
    write_cube,
)

EXTS = [".mat", ".npy", ".npz", ".h5", ".tif", ".hdr"]
EXPECTED_LAYOUT = {
    ".mat": "HWB",
    ".npy": "BHW",
    ".npz": "BHW",
    ".h5": "BHW",
    ".tif": "BHW",
    ".hdr": "BHW",
}


def cube(shape=(5, 8, 8), dtype=np.float32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def name_re(path: Path) -> str:
    return re.escape(path.name)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".ras2s-")]


def mat73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a MATLAB 7.3 file by hand: HDF5 + 512-byte userblock, arrays in MATLAB order."""
    classes = {"float64": "double", "float32": "single"}
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in arrays.items():
            ds = f.create_dataset(name, data=a.T)  # HDF5 holds MATLAB arrays axes-reversed
            ds.attrs["MATLAB_class"] = np.bytes_(classes.get(str(a.dtype), str(a.dtype)))
    header = b"MATLAB 7.3 MAT-file, Platform: test, HDF5 schema 1.00 .".ljust(116, b" ")
    with open(path, "r+b") as fh:
        fh.write((header + b"\x00" * 8 + b"\x00\x02IM").ljust(512, b"\x00"))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
@pytest.mark.parametrize("ext", EXTS)
def test_round_trip(tmp_path, ext, dtype):
    data = cube(dtype=dtype)
    out = write_cube(tmp_path / f"cube{ext}", data)
    got = read_cube(out)
    assert got.data.dtype == data.dtype
    assert got.data.shape == data.shape
    np.testing.assert_array_equal(got.data, data)
    assert got.layout == EXPECTED_LAYOUT[ext]
    assert got.format == FORMATS[ext]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip(tmp_path, dtype):
    data = cube((4, 6, 9), dtype=dtype)
    out = write_cube(tmp_path / "cube_png", data)
    assert sorted(os.listdir(out)) == [f"band_00{i}.png" for i in range(1, 5)]
    got = read_cube(out)
    assert got.format == "png" and got.layout == "BHW"
    assert got.data.dtype == dtype
    np.testing.assert_array_equal(got.data, data)
    again = write_cube(tmp_path / "again", got.data, like=got)
    assert sorted(os.listdir(again)) == got.metadata["files"]


def test_mat_is_stored_in_matlab_order(tmp_path):
    data = cube((5, 6, 7))
    write_cube(tmp_path / "c.mat", data, key="cube")
    stored = scipy.io.loadmat(tmp_path / "c.mat")["cube"]
    np.testing.assert_array_equal(stored, data.transpose(1, 2, 0))


def test_mat_v73_handmade_reads_in_matlab_order(tmp_path):
    hwb = cube((6, 7, 5), np.float32)  # MATLAB rows x cols x bands
    mat73(tmp_path / "v73.mat", {"cube": hwb, "gt": np.zeros((6, 7))})
    assert scipy.io.matlab.matfile_version(str(tmp_path / "v73.mat")) == (2, 0)
    got = read_cube(tmp_path / "v73.mat")
    assert (got.key, got.layout, got.metadata["mat_version"]) == ("cube", "HWB", "7.3")
    np.testing.assert_array_equal(got.data, hwb.transpose(2, 0, 1))
    # the same bytes named .h5 are still read as a MATLAB file
    os.replace(tmp_path / "v73.mat", tmp_path / "v73.h5")
    got = read_cube(tmp_path / "v73.h5")
    assert got.format == "mat"
    np.testing.assert_array_equal(got.data, hwb.transpose(2, 0, 1))


def test_mat_v73_writer_for_large_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(rio.mat, "_MAT73_THRESHOLD", 0)
    data = cube((5, 6, 7), np.uint16)
    out = write_cube(tmp_path / "big.mat", data, key="NRD")
    assert out.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    assert scipy.io.matlab.matfile_version(str(out)) == (2, 0)
    with h5py.File(out, "r") as f:
        assert f["NRD"].attrs["MATLAB_class"] == b"uint16"
        np.testing.assert_array_equal(f["NRD"][()].T, data.transpose(1, 2, 0))
    got = read_cube(out)
    assert got.key == "NRD" and got.data.dtype == np.uint16
    np.testing.assert_array_equal(got.data, data)


def test_tiff_layout_from_metadata(tmp_path):
    data = cube((5, 6, 7))
    tifffile.imwrite(
        tmp_path / "hwb.tif",
        data.transpose(1, 2, 0),
        photometric="minisblack",
        planarconfig="contig",
        metadata={"axes": "YXS"},
    )
    got = read_cube(tmp_path / "hwb.tif")
    assert got.layout == "HWB"
    np.testing.assert_array_equal(got.data, data)
    out = write_cube(tmp_path / "out.tif", got.data, like=got)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "YXS"
    tifffile.imwrite(tmp_path / "plain.tif", data)  # tifffile's own axes: QYX
    assert read_cube(tmp_path / "plain.tif").layout == "BHW"


@pytest.mark.parametrize(("interleave", "layout"), [("bsq", "BHW"), ("bil", "HBW"), ("bip", "HWB")])
def test_envi_interleave_and_header_survive(tmp_path, interleave, layout):
    data = cube((4, 6, 7), np.int16)
    wl = ["400.5", "500", "600", "700"]
    meta = {
        "wavelength": wl,
        "fwhm": ["10"] * 4,
        "wavelength units": "nm",
        "band names": ["a", "b", "c", "d"],
        "description": "test scene",
    }
    envi.save_image(
        str(tmp_path / "in.hdr"),
        data.transpose(1, 2, 0),
        interleave=interleave,
        metadata=meta,
        ext=".img",
    )
    got = read_cube(tmp_path / "in.hdr")
    assert got.layout == layout and got.data.dtype == np.int16
    np.testing.assert_array_equal(got.data, data)
    out = write_cube(tmp_path / "out.hdr", got.data, like=got)
    assert (tmp_path / "out.img").is_file()
    back = read_cube(out)
    assert back.metadata["interleave"] == interleave
    assert [float(w) for w in back.metadata["wavelength"]] == [float(w) for w in wl]
    assert back.metadata["band names"] == ["a", "b", "c", "d"]
    assert back.metadata["description"] == "test scene"
    np.testing.assert_array_equal(back.data, data)


def test_write_layout_argument_and_like(tmp_path):
    data = cube((5, 8, 8))
    out = write_cube(tmp_path / "a.npy", data, layout="hwb")
    assert np.load(out).shape == (8, 8, 5)
    got = read_cube(out)
    assert got.layout == "HWB"
    out2 = write_cube(tmp_path / "b.npy", got.data, like=got)
    assert np.load(out2).shape == (8, 8, 5)
    # like of another format does not carry its layout over
    mat = read_cube(write_cube(tmp_path / "c.mat", data))
    assert np.load(write_cube(tmp_path / "d.npy", data, like=mat)).shape == (5, 8, 8)


def test_write_keys(tmp_path):
    data = cube((5, 8, 8))
    src = read_cube(write_cube(tmp_path / "a.mat", data, key="Omsi"))
    assert src.key == "Omsi"
    assert read_cube(write_cube(tmp_path / "b.mat", data, like=src)).key == "Omsi"
    assert read_cube(write_cube(tmp_path / "c.h5", data, key="g/cube")).key == "g/cube"
    assert read_cube(write_cube(tmp_path / "d.npz", data)).key == "data"
    with pytest.raises(OutputError, match="not a valid MATLAB variable name"):
        write_cube(tmp_path / "e.mat", data, key="g/cube")


def test_written_files_respect_umask(tmp_path):
    out = write_cube(tmp_path / "a.npy", cube())
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


# --------------------------------------------------------------------------- layout rule


@pytest.mark.parametrize(
    ("shape", "convention", "expected"),
    [
        ((512, 512, 31), None, "HWB"),
        ((31, 512, 512), None, "BHW"),
        ((100, 100, 64), None, "HWB"),
        ((80, 100, 162), "HWB", "HWB"),
        ((100, 100, 64), "HWB", "HWB"),
        ((8, 8, 8), "HWB", "HWB"),
        ((31, 48, 31), "HWB", "HWB"),
        ((229, 394, 17), "HWB", "HWB"),
    ],
)
def test_detect_layout(shape, convention, expected):
    assert detect_layout(shape, convention=convention) == expected


@pytest.mark.parametrize(
    ("shape", "convention"),
    [
        ((31, 48, 80), None),
        ((80, 100, 162), None),
        ((8, 8, 8), None),
        ((31, 48, 31), None),
        ((64, 100, 100), "HWB"),
        ((31, 8, 8), "HWB"),
    ],
)
def test_detect_layout_refuses_to_guess(shape, convention):
    with pytest.raises(LayoutError, match=re.escape(str(shape)) + ".*--layout"):
        detect_layout(shape, source="x.npy", convention=convention)


def test_layout_rule_on_files(tmp_path):
    scipy.io.savemat(tmp_path / "hydice.mat", {"data": np.zeros((80, 100, 162), np.uint16)})
    got = read_cube(tmp_path / "hydice.mat")
    assert got.layout == "HWB" and got.data.shape == (162, 80, 100)

    scipy.io.savemat(tmp_path / "muufl.mat", {"data": np.zeros((64, 100, 100), np.float32)})
    with pytest.raises(LayoutError, match=r"muufl\.mat.*\(64, 100, 100\).*--layout"):
        read_cube(tmp_path / "muufl.mat")
    assert read_cube(tmp_path / "muufl.mat", layout="BHW").data.shape == (64, 100, 100)
    assert read_cube(tmp_path / "muufl.mat", layout="hwb").data.shape == (100, 64, 100)

    np.save(tmp_path / "amb.npy", np.zeros((31, 48, 80), np.uint8))
    with pytest.raises(LayoutError, match=r"amb\.npy.*\(31, 48, 80\).*--layout HWB"):
        read_cube(tmp_path / "amb.npy")
    assert read_cube(tmp_path / "amb.npy", layout="BHW").data.shape == (31, 48, 80)
    assert read_cube(tmp_path / "amb.npy", layout="HWB").data.shape == (80, 31, 48)

    np.save(tmp_path / "hwb.npy", np.zeros((512, 512, 31), np.uint8))
    got = read_cube(tmp_path / "hwb.npy")
    assert got.layout == "HWB" and got.data.shape == (31, 512, 512)
    np.save(tmp_path / "bhw.npy", np.zeros((31, 512, 512), np.uint8))
    got = read_cube(tmp_path / "bhw.npy")
    assert got.layout == "BHW" and got.data.shape == (31, 512, 512)

    with pytest.raises(InputError, match=r"amb\.npy.*HWB.*BHW.*'XYZ'"):
        read_cube(tmp_path / "amb.npy", layout="XYZ")


def test_layout_override_wins_over_metadata(tmp_path):
    data = cube((5, 6, 7))
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="minisblack", metadata={"axes": "CYX"})
    assert read_cube(tmp_path / "a.tif", layout="HWB").data.shape == (7, 5, 6)


# --------------------------------------------------------------------------- keys


def test_key_single_cube_is_taken(tmp_path):
    data = cube((5, 8, 8))
    np.savez(tmp_path / "a.npz", map=np.zeros((8, 8)), cube=data, bands=np.arange(5))
    got = read_cube(tmp_path / "a.npz")
    assert got.key == "cube"
    np.testing.assert_array_equal(got.data, data)


def test_key_several_candidates(tmp_path):
    np.savez(tmp_path / "a.npz", a=cube((5, 8, 8)), b=cube((3, 8, 8)))
    with pytest.raises(InputError, match=r"a\.npz.*'a'.*\(5, 8, 8\).*'b'.*--key"):
        read_cube(tmp_path / "a.npz")
    assert read_cube(tmp_path / "a.npz", key="b").data.shape == (3, 8, 8)


def test_key_missing_lists_available(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"data": cube((8, 8, 5)), "map": np.zeros((8, 8))})
    with pytest.raises(InputError, match=r"a\.mat: no variable 'zz'; available: 'data'.*'map'"):
        read_cube(tmp_path / "a.mat", key="zz")
    with pytest.raises(InputError, match=r"a\.mat: 'map' is 2-D \(8, 8\)"):
        read_cube(tmp_path / "a.mat", key="map")


def test_key_only_2d_arrays(tmp_path):
    scipy.io.savemat(
        tmp_path / "jasper.mat", {"Y": np.zeros((198, 100), np.uint16), "nBand": np.uint8(198)}
    )
    with pytest.raises(InputError, match=r"jasper\.mat.*'Y' is 2-D \(198, 100\).*must be 3-D"):
        read_cube(tmp_path / "jasper.mat")


def test_key_non_numeric_mat_variables(tmp_path):
    scipy.io.savemat(
        tmp_path / "a.mat", {"mask": np.ones((8, 8, 5), bool), "cube": cube((8, 8, 5))}
    )
    assert read_cube(tmp_path / "a.mat").key == "cube"
    with pytest.raises(InputError, match=r"a\.mat: 'mask' is \(8, 8, 5\) logical, not numeric"):
        read_cube(tmp_path / "a.mat", key="mask")


def test_key_h5_paths(tmp_path):
    data = cube((5, 8, 8))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("group/cube", data=data)
        f.create_dataset("group/wavelength", data=np.arange(5.0))
    for key in (None, "group/cube", "/group/cube"):
        got = read_cube(tmp_path / "a.h5", key=key)
        assert got.key == "group/cube"
        np.testing.assert_array_equal(got.data, data)


def test_key_v73_several(tmp_path):
    mat73(tmp_path / "s.mat", {"A": cube((9, 9, 3)), "SamSon": cube((9, 9, 15))})
    with pytest.raises(InputError, match=r"s\.mat.*'A' is \(9, 9, 3\).*'SamSon'.*--key"):
        read_cube(tmp_path / "s.mat")
    assert read_cube(tmp_path / "s.mat", key="SamSon").data.shape == (15, 9, 9)


# --------------------------------------------------------------------------- read errors


def test_error_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mat: no such file"):
        read_cube(tmp_path / "nope.mat")


def test_error_directory_not_png_cube(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"d: is a folder but not a PNG cube folder"):
        read_cube(tmp_path / "d")
    (tmp_path / "d" / "sub").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "d" / "sub" / "b_1.png")
    with pytest.raises(InputError, match=r"did you mean .*sub"):
        read_cube(tmp_path / "d")


def test_error_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.npy"
    np.save(path, cube())
    path.chmod(0)
    if os.geteuid() == 0:  # root ignores permissions: simulate the failure

        def fake_open(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        monkeypatch.setattr(rio.base, "open", fake_open, raising=False)
    try:
        with pytest.raises(InputError, match=r"locked\.npy: permission denied"):
            read_cube(path)
    finally:
        path.chmod(0o644)


def test_error_unknown_extension(tmp_path):
    (tmp_path / "cube.xyz").write_bytes(b"123")
    with pytest.raises(
        InputError,
        match=r"cube\.xyz: unknown extension '\.xyz'; supported: "
        r"\.mat, \.npy.*\.hdr",
    ):
        read_cube(tmp_path / "cube.xyz")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(InputError, match=r"one\.png.*folder of per-band \.png"):
        read_cube(tmp_path / "one.png")


def _truncated(tmp_path: Path, ext: str) -> Path:
    path = write_cube(tmp_path / f"full{ext}", cube((5, 64, 64), np.float64))
    cut = tmp_path / f"cut{ext}"
    raw = path.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    return cut


@pytest.mark.parametrize("ext", [".mat", ".npy", ".npz", ".h5", ".tif"])
def test_error_truncated(tmp_path, capfd, ext):
    cut = _truncated(tmp_path, ext)
    with pytest.raises(InputError, match=name_re(cut) + ".*truncated"):
        read_cube(cut)
    assert capfd.readouterr().err == ""  # no library chatter on stderr


@pytest.mark.parametrize("ext", [".mat", ".npy", ".npz", ".h5", ".tif", ".hdr"])
def test_error_random_bytes(tmp_path, ext):
    path = tmp_path / f"junk{ext}"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(InputError, match=name_re(path) + ".*corrupt"):
        read_cube(path)


def test_error_npz_named_npy_and_envi_data_file(tmp_path):
    with open(tmp_path / "z.npy", "wb") as fh:
        np.savez(fh, a=cube())
    with pytest.raises(InputError, match=r"z\.npy: is an \.npz archive"):
        read_cube(tmp_path / "z.npy")
    envi.save_image(str(tmp_path / "e.hdr"), cube((6, 7, 3)), ext=".img")
    with pytest.raises(InputError, match=r"e\.img: unknown extension.*pass the header e\.hdr"):
        read_cube(tmp_path / "e.img")


def test_error_envi_data_file_missing(tmp_path):
    envi.save_image(str(tmp_path / "a.hdr"), cube((6, 7, 3)), ext=".img")
    (tmp_path / "a.img").unlink()
    with pytest.raises(InputError, match=r"a\.hdr: cannot read as envi"):
        read_cube(tmp_path / "a.hdr")


def test_error_plain_hdf5_named_mat(tmp_path):
    with h5py.File(tmp_path / "p.mat", "w") as f:
        f["x"] = cube((8, 8, 5))
    with pytest.raises(InputError, match=r"p\.mat: plain HDF5.*rename it to \.h5"):
        read_cube(tmp_path / "p.mat")


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((8, 8), r"is 2-D \(8, 8\); a cube must be 3-D"),
        ((5,), r"is 1-D \(5,\)"),
        ((1, 5, 8, 8), r"is 4-D \(1, 5, 8, 8\).*singleton axes are not squeezed"),
        ((2, 5, 8, 8), r"is 4-D \(2, 5, 8, 8\); a cube must be 3-D"),
        ((0, 8, 8), r"zero-size axis \(0, 8, 8\)"),
    ],
)
def test_error_bad_shapes(tmp_path, shape, pattern):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    with pytest.raises(InputError, match=r"bad\.npy: .*" + pattern):
        read_cube(tmp_path / "bad.npy")


@pytest.mark.parametrize("dtype", [np.complex64, bool, "U3"])
def test_error_non_numeric(tmp_path, dtype):
    np.save(tmp_path / "bad.npy", np.zeros((5, 8, 8), dtype))
    with pytest.raises(InputError, match=r"bad\.npy: .*real integers or floats"):
        read_cube(tmp_path / "bad.npy")


def test_error_object_array(tmp_path):
    np.save(tmp_path / "obj.npy", np.empty((5, 8, 8), object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy: holds pickled objects"):
        read_cube(tmp_path / "obj.npy")


def test_error_empty_mat_and_h5(tmp_path):
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["cube"] = np.zeros((0, 8, 8), np.float32)
    with pytest.raises(InputError, match=r"e\.h5: 'cube' has a zero-size axis"):
        read_cube(tmp_path / "e.h5")


def test_big_endian_is_made_native(tmp_path):
    data = cube((5, 8, 8)).astype(">f4")
    np.save(tmp_path / "be.npy", data)
    got = read_cube(tmp_path / "be.npy")
    assert got.data.dtype == np.float32 and got.data.dtype.isnative
    np.testing.assert_array_equal(got.data, data)


# --------------------------------------------------------------------------- PNG folders


def _png_folder(folder: Path, names, size=(6, 9), dtype=np.uint16) -> list[np.ndarray]:
    folder.mkdir()
    bands = []
    for i, name in enumerate(names):
        band = np.full(size, i * 3 + 1, dtype)
        Image.fromarray(band).save(folder / name)
        bands.append(band)
    return bands


def test_png_natural_sort_and_ignored_files(tmp_path):
    folder = tmp_path / "scene_ms"
    names = [f"band_{i}.png" for i in (10, 2, 1)]
    _png_folder(folder, names)
    (folder / "scene_RGB.bmp").write_bytes(b"BM")
    (folder / "._band_1.png").write_bytes(b"junk")  # macOS resource fork
    got = read_cube(folder)
    assert got.metadata["files"] == ["band_1.png", "band_2.png", "band_10.png"]
    assert got.metadata["ignored"] == ["._band_1.png", "scene_RGB.bmp"]
    assert got.data[:, 0, 0].tolist() == [7, 4, 1]  # band_1, band_2, band_10


def test_png_mismatch_names_the_odd_file(tmp_path):
    folder = tmp_path / "f"
    _png_folder(folder, ["b_01.png", "b_02.png"])
    Image.fromarray(np.zeros((5, 9), np.uint16)).save(folder / "b_03.png")
    with pytest.raises(InputError, match=r"b_03\.png: band is \(5, 9\).*b_01\.png is \(6, 9\)"):
        read_cube(folder)
    (folder / "b_03.png").unlink()
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(folder / "b_03.png")
    with pytest.raises(InputError, match=r"b_03\.png: band is \(6, 9\) uint8"):
        read_cube(folder)


def test_png_rgb_bands(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    gray = cube((6, 9), np.uint8)
    for i in (1, 2):
        Image.fromarray(np.stack([gray] * 3 + [np.full_like(gray, 255)], -1)).save(
            folder / f"x_{i}.png"
        )
    got = read_cube(folder)
    assert got.data.shape == (2, 6, 9) and got.data.dtype == np.uint8
    np.testing.assert_array_equal(got.data[1], gray)
    colour = np.stack([gray, gray, 255 - gray], -1)
    Image.fromarray(colour).save(folder / "x_3.png")
    with pytest.raises(InputError, match=r"x_3\.png: RGB PNG whose colour channels differ"):
        read_cube(folder)


def test_is_png_cube_folder(tmp_path):
    folder = tmp_path / "f"
    _png_folder(folder, ["a_1.png"])
    assert is_png_cube_folder(folder)
    (folder / "preview.bmp").write_bytes(b"BM")
    assert is_png_cube_folder(folder)
    np.save(folder / "cube.npy", cube())
    assert not is_png_cube_folder(folder)
    assert not is_png_cube_folder(tmp_path / "missing")
    assert not is_png_cube_folder(folder / "a_1.png")
    (tmp_path / "empty").mkdir()
    assert not is_png_cube_folder(tmp_path / "empty")


def test_png_write_refuses_other_dtypes(tmp_path):
    with pytest.raises(
        OutputError,
        match=r"out: PNG holds only uint8 or uint16.*float32.*"
        r"pick another format",
    ):
        write_cube(tmp_path / "out", cube())
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- write errors


def test_write_refuses_overwrite_unless_forced(tmp_path):
    out = write_cube(tmp_path / "a.npy", cube(seed=1))
    with pytest.raises(OutputError, match=r"a\.npy: already exists; pass --force"):
        write_cube(out, cube(seed=2))
    np.testing.assert_array_equal(np.load(out), cube(seed=1))
    write_cube(out, cube(seed=2), force=True)
    np.testing.assert_array_equal(np.load(out), cube(seed=2))


def test_write_png_folder_force(tmp_path):
    out = write_cube(tmp_path / "f", cube(dtype=np.uint8, seed=1))
    with pytest.raises(OutputError, match="already exists"):
        write_cube(out, cube(dtype=np.uint8, seed=2))
    write_cube(out, cube(dtype=np.uint8, seed=2), force=True)
    np.testing.assert_array_equal(read_cube(out).data, cube(dtype=np.uint8, seed=2))
    assert leftovers(tmp_path) == []
    other = tmp_path / "docs"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="not only band PNGs; refusing"):
        write_cube(other, cube(dtype=np.uint8), force=True)
    assert (other / "thesis.tex").read_text() == "precious"


def test_write_envi_refuses_existing_data_file(tmp_path):
    (tmp_path / "a.img").write_bytes(b"old")
    with pytest.raises(OutputError, match=r"a\.img: already exists"):
        write_cube(tmp_path / "a.hdr", cube())


def test_write_missing_or_readonly_folder(tmp_path, monkeypatch):
    with pytest.raises(OutputError, match=r"a\.npy: output folder .*missing does not exist"):
        write_cube(tmp_path / "missing" / "a.npy", cube())
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root can write anywhere: simulate a read-only folder
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == ro else real(p, m))
    try:
        with pytest.raises(OutputError, match=r"a\.npy: output folder .*ro is not writable"):
            write_cube(ro / "a.npy", cube())
    finally:
        ro.chmod(0o755)
    assert list(ro.iterdir()) == []


def test_write_unknown_extension_and_bad_data(tmp_path):
    with pytest.raises(OutputError, match=r"out\.jpg: unknown output extension '\.jpg'"):
        write_cube(tmp_path / "out.jpg", cube())
    with pytest.raises(OutputError, match=r"out\.npy: .*shape \(8, 8\)"):
        write_cube(tmp_path / "out.npy", np.zeros((8, 8)))
    with pytest.raises(OutputError, match=r"out\.npy: .*complex128"):
        write_cube(tmp_path / "out.npy", np.zeros((2, 8, 8), complex))
    with pytest.raises(OutputError, match=r"out\.mat: MATLAB has no float16"):
        write_cube(tmp_path / "out.mat", np.zeros((2, 8, 8), np.float16))
    assert list(tmp_path.iterdir()) == []


def _half_then_fail(path, *args, **kwargs):
    target = path if isinstance(path, (str, os.PathLike)) else None
    if target is None:  # a file object
        path.write(b"partial bytes")
    else:
        Path(target).write_bytes(b"partial bytes")
        if Path(target).suffix == ".hdr":
            Path(target).with_suffix(".img").write_bytes(b"partial data")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    ("ext", "module", "func"),
    [
        (".mat", scipy.io, "savemat"),
        (".npy", np.lib.format, "open_memmap"),
        (".tif", tifffile, "imwrite"),
        (".hdr", envi, "write_envi_header"),
    ],
)
def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch, ext, module, func):
    old = cube(seed=1)
    out = write_cube(tmp_path / f"cube{ext}", old)
    before = sorted(p.name for p in tmp_path.iterdir())
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(module, func, _half_then_fail)
    with pytest.raises(OutputError, match=name_re(out) + r": writing failed .*No space left"):
        write_cube(out, cube(seed=2), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot
    monkeypatch.undo()
    np.testing.assert_array_equal(read_cube(out).data, old)
    # and with no previous file: nothing at all is left
    new = tmp_path / "sub"
    new.mkdir()
    monkeypatch.setattr(module, func, _half_then_fail)
    with pytest.raises(OutputError):
        write_cube(new / f"x{ext}", cube())
    assert list(new.iterdir()) == []


def test_atomic_png_failure_keeps_old_folder(tmp_path, monkeypatch):
    out = write_cube(tmp_path / "f", cube(dtype=np.uint8, seed=1))

    def fail(folder, data, key, layout, like):
        Image.fromarray(data[0]).save(folder / "band_001.png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rio.png, "write_png", fail)
    with pytest.raises(OutputError, match=r"f: writing failed"):
        write_cube(out, cube(dtype=np.uint8, seed=2), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    monkeypatch.undo()
    np.testing.assert_array_equal(read_cube(out).data, cube(dtype=np.uint8, seed=1))


def test_interrupt_cleans_up_and_propagates(tmp_path, monkeypatch):
    def interrupted(tmp, *args):
        Path(tmp).write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setitem(rio._WRITERS, "npy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_cube(tmp_path / "a.npy", cube())
    assert list(tmp_path.iterdir()) == []


def test_default_output_path(tmp_path):
    assert default_output_path("/d/cube.mat") == Path("/d/cube_denoised.mat")
    assert default_output_path("/d/scene.hdr") == Path("/d/scene_denoised.hdr")
    assert default_output_path("/d/a.b.npy", suffix="_x") == Path("/d/a.b_x.npy")
    folder = tmp_path / "balloons_ms"
    folder.mkdir()
    assert default_output_path(folder) == tmp_path / "balloons_ms_denoised"
    assert default_output_path(str(folder) + "/") == tmp_path / "balloons_ms_denoised"


def test_cubefile_is_frozen(tmp_path):
    got = read_cube(write_cube(tmp_path / "a.npy", cube()))
    assert isinstance(got, CubeFile)
    with pytest.raises(AttributeError):
        got.layout = "HWB"


# --------------------------------------------------------------------------- real data

DATA = Path(__file__).parents[2] / "shared" / "data"


def _manifest() -> list:
    """Rows of ``DATA/MANIFEST.md``: (file, key, expected bands-first shape or None, dtype)."""
    if not (DATA / "MANIFEST.md").is_file():
        return [pytest.param(None, None, None, None, id="no-shared-data")]
    rows = []
    for line in (DATA / "MANIFEST.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[0].endswith(".mat"):
            continue
        file, key, shape_text, dtype, what = cells[0], cells[1], cells[2], cells[3], cells[5]
        shape = tuple(int(s) for s in shape_text.split("x"))
        if len(shape) == 3 and "band-first" not in what:
            shape = (shape[2], shape[0], shape[1])  # MATLAB rows x cols x bands
        rows.append(pytest.param(file, key, shape, dtype, id=Path(file).stem))
    return rows


@pytest.mark.skipif(
    not DATA.is_dir(),
    reason=f"real data folder {DATA} is not present (shared/data beside the checkout)",
)
class TestRealData:
    @pytest.mark.parametrize(("file", "key", "shape", "dtype"), _manifest())
    def test_manifest_cube(self, file, key, shape, dtype):
        path = DATA / file
        if len(shape) != 3:  # JasperRidge: Y is (198, 10000), 2-D
            with pytest.raises(InputError, match=name_re(path) + r".*'Y' is 2-D \(198, 10000\)"):
                read_cube(path)
            with pytest.raises(InputError, match=r"'Y' is 2-D \(198, 10000\); a cube must"):
                read_cube(path, key=key)
            return
        got = read_cube(path, key=key)
        assert got.data.shape == shape
        assert got.data.dtype == np.dtype(dtype)
        assert got.key == key and got.format == "mat"

    def test_muufl_v73_is_already_bands_last_in_matlab_order(self):
        # HDF5 holds (64, 100, 100); MATLAB order is 100 x 100 x 64, so the MATLAB
        # convention already gives 64 bands of 100 x 100 (no --layout needed).
        path = DATA / "MUUFL_Gulfport_anomaly_crop" / "MUUFL.mat"
        got = read_cube(path)
        assert got.metadata["mat_version"] == "7.3" and got.layout == "HWB"
        with h5py.File(path, "r") as f:
            raw = f["data"][()]
        np.testing.assert_array_equal(got.data, raw.transpose(0, 2, 1))
        # forcing BHW on the MATLAB-order array would make 100 "bands" of 100 x 64
        assert read_cube(path, layout="BHW").data.shape == (100, 100, 64)

    def test_samson_needs_key(self):
        with pytest.raises(InputError, match=r"Samson\.mat: several 3-D.*'A'.*'SamSon'"):
            read_cube(DATA / "Samson" / "Samson.mat")


# --- issue 13: declared sizes, special files, what --force may replace -----------------


def test_truncated_envi_reported_not_allocated(tmp_path):
    header = tmp_path / "big.hdr"
    header.write_text(
        "ENVI\nsamples = 20000\nlines = 20000\nbands = 200\nheader offset = 0\n"
        "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n"
    )
    (tmp_path / "big.img").write_bytes(b"\0" * 4096)
    with pytest.raises(InputError, match=r"big\.hdr: the header declares .*298 GiB.* 4,096 bytes"):
        read_cube(header)


def test_sparse_hdf5_reported_not_allocated(tmp_path):
    with h5py.File(tmp_path / "sparse.h5", "w") as f:
        f.create_dataset("cube", shape=(200, 20000, 20000), dtype="f4", chunks=(1, 256, 256))
    with pytest.raises(InputError, match=r"sparse\.h5: dataset '/cube' declares .*chunks"):
        read_cube(tmp_path / "sparse.h5", layout="BHW")


@pytest.mark.parametrize("ext", [".npy", ".npz"])
def test_npy_header_larger_than_the_file_reported(tmp_path, ext):
    import io as iolib
    import zipfile

    buffer = iolib.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (200, 20000, 20000)}
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(b"\0" * 4096)
    path = tmp_path / f"huge{ext}"
    if ext == ".npy":
        path.write_bytes(buffer.getvalue())
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("cube.npy", buffer.getvalue())
    with pytest.raises(InputError, match=r"huge\.np.: .*declares .*298 GiB"):
        read_cube(path, layout="BHW")


def test_tiff_whose_header_declares_more_than_the_file_is_reported(tmp_path, capfd):
    import struct

    import tifffile

    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((8, 16, 16), np.uint16), planarconfig="separate")
    data = bytearray(small.read_bytes())
    with tifffile.TiffFile(small) as tif:
        for tag in tif.pages.first.tags.values():
            if tag.name in ("ImageWidth", "ImageLength"):
                fmt = "<H" if tag.dtype == 3 else "<I"
                struct.pack_into(fmt, data, tag.valueoffset, 60000)
    huge = tmp_path / "huge.tif"
    huge.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"huge\.tif: the TIFF declares .*53\.6 GiB.* 4,4"):
        read_cube(huge)
    assert capfd.readouterr().err == ""  # tifffile's own complaints stay quiet


def test_special_files_refused_as_inputs(tmp_path):
    os.mkfifo(tmp_path / "pipe.npy")
    with pytest.raises(InputError, match="FIFO"):
        read_cube(tmp_path / "pipe.npy")
    os.symlink(tmp_path / "gone.npy", tmp_path / "dangling.npy")
    with pytest.raises(InputError, match="dangling"):
        read_cube(tmp_path / "dangling.npy")
    header = tmp_path / "c.hdr"
    write_cube(header, np.zeros((3, 4, 4), np.float32))
    (tmp_path / "c.img").unlink()
    os.mkfifo(tmp_path / "c.img")
    with pytest.raises(InputError, match=r"c\.hdr"):  # refused, never opened (no hang)
        read_cube(header)


def test_timedelta_is_not_a_real_number(tmp_path):
    np.save(tmp_path / "td.npy", np.zeros((3, 4, 4), "m8[s]"))
    with pytest.raises(InputError, match="timedelta64"):
        read_cube(tmp_path / "td.npy", layout="BHW")


def test_check_output_rules(tmp_path):
    from ras2s.io import check_output, check_suffix

    source = tmp_path / "in.npy"
    np.save(source, np.zeros((3, 4, 4), np.float32))
    with pytest.raises(OutputError, match="would overwrite the input"):
        check_output(source, force=True, inputs=[source])
    os.symlink(source, tmp_path / "link.npy")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output(tmp_path / "link.npy", force=True)
    (tmp_path / "notes").write_text("x")
    with pytest.raises(OutputError, match="no extension"):
        check_output(tmp_path / "notes", np.uint8, force=True)
    with pytest.raises(OutputError, match="ENVI has no float16"):
        check_output(tmp_path / "o.hdr", np.float16)
    assert check_output(tmp_path / "new.tif", np.float16) == "tiff"
    assert check_output(source, np.float32, force=True) == "npy"  # a plain file: replaceable
    for bad in ("", "/x", "a/b", ".."):
        with pytest.raises(InputError, match="suffix"):
            check_suffix(bad)


def test_expand_inputs_skips_earlier_outputs(tmp_path):
    from ras2s.io import expand_inputs

    for name in ("a.npy", "a_denoised.npy", "b_denoised.mat"):
        write_cube(tmp_path / name, np.zeros((3, 4, 4), np.float32))
    (tmp_path / "a_denoised.npy.json").write_text("{}")
    found = expand_inputs([tmp_path], skip_suffix="_denoised")
    assert [p.name for p in found] == ["a.npy"]
    explicit = expand_inputs([tmp_path / "a_denoised.npy"], skip_suffix="_denoised")
    assert [p.name for p in explicit] == ["a_denoised.npy"]  # named by hand: used
