"""TIFF outputs keep the input's form (tiling, compression, predictor); COG output."""

import struct
import warnings

import numpy as np
import pytest
import tifffile

from ras2s.errors import OutputError
from ras2s.io import read_cube, write_cube
from ras2s.tiffform import TiffForm, _options, cog_levels
from tests.test_georef import geotiff, rasterio_or_skip, tags


def page_form(path):
    with tifffile.TiffFile(path) as tif:
        p = tif.pages.first
        return {
            "tiled": p.is_tiled,
            "tile": (p.tilelength, p.tilewidth),
            "compression": p.compression.name,
            "predictor": int(p.predictor),
            "planar": p.planarconfig.name,
            "rowsperstrip": p.rowsperstrip,
        }


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_tiled_deflate_geotiff_comes_back_tiled_deflate(tmp_path, rng, interleave):
    rasterio = rasterio_or_skip()
    data = rng.integers(1, 4000, (5, 100, 140), dtype=np.uint16)
    profile = geotiff(tmp_path / "plain.tif", data, interleave, nodata=0)
    profile.update(tiled=True, blockxsize=32, blockysize=64, compress="deflate", predictor=2)
    with rasterio.open(tmp_path / "in.tif", "w", **profile) as dst:
        dst.write(data)
    cube = read_cube(tmp_path / "in.tif")
    assert cube.metadata["tile"] == (64, 32)
    out = write_cube(tmp_path / "out.tif", cube.data, like=cube)
    assert page_form(out) == page_form(tmp_path / "in.tif")
    form = page_form(out)
    assert form["tiled"] and form["tile"] == (64, 32)
    assert form["compression"] == "ADOBE_DEFLATE" and form["predictor"] == 2
    assert tags(out)[0] == tags(tmp_path / "in.tif")[0]
    with rasterio.open(tmp_path / "in.tif") as a, rasterio.open(out) as b:
        assert b.profile == a.profile  # crs, transform, nodata, tiling, compression
        np.testing.assert_array_equal(b.read(), data)


def test_striped_uncompressed_geotiff_stays_as_it_was(tmp_path, rng):
    rasterio = rasterio_or_skip()
    data = rng.random((4, 40, 300)).astype(np.float32)  # GDAL: strips of about 8 KiB
    geotiff(tmp_path / "in.tif", data, "band")
    cube = read_cube(tmp_path / "in.tif")
    out = write_cube(tmp_path / "out.tif", cube.data, like=cube)
    before, after = page_form(tmp_path / "in.tif"), page_form(out)
    assert not after["tiled"] and after["compression"] == "NONE"
    assert after["rowsperstrip"] == before["rowsperstrip"] < 40  # GDAL's strips, kept
    with rasterio.open(tmp_path / "in.tif") as a, rasterio.open(out) as b:
        assert b.profile == a.profile
        np.testing.assert_array_equal(b.read(), data)


@pytest.mark.parametrize("planar", ["separate", "contig"])
def test_tifffile_tiled_zlib_input_keeps_its_form(tmp_path, rng, planar):
    data = rng.integers(-1000, 1000, (3, 70, 90), dtype=np.int16)
    stored = data if planar == "separate" else data.transpose(1, 2, 0)
    tifffile.imwrite(
        tmp_path / "in.tif",
        stored,
        photometric="minisblack",
        planarconfig=planar,
        tile=(48, 16),
        compression="zlib",
        predictor=2,
    )
    cube = read_cube(tmp_path / "in.tif")
    out = write_cube(tmp_path / "out.tif", cube.data * 2, like=cube)
    assert page_form(out) == page_form(tmp_path / "in.tif")
    np.testing.assert_array_equal(read_cube(out).data, data * 2)


def test_lossy_or_unavailable_compression_becomes_deflate():
    for name in ("JPEG", "WEBP", "NOT_A_CODEC"):
        opts = _options(TiffForm(tile=(32, 32), compression=name, predictor=2), np.dtype("u2"))
        assert opts == {"compression": "ADOBE_DEFLATE", "predictor": 2, "tile": (32, 32)}
    # no predictor without compression; floating-point predictor only for floats
    assert _options(TiffForm(predictor=2), np.dtype("f4"))["predictor"] is None
    opts = _options(TiffForm(compression="ADOBE_DEFLATE", predictor=3), np.dtype("i2"))
    assert opts["predictor"] == 2


def test_cog_levels_halve_down_to_one_tile():
    assert cog_levels((600, 700), 256) == [(600, 700), (300, 350), (150, 175)]
    assert cog_levels((200, 256), 256) == [(200, 256)]
    assert cog_levels((2049, 10), 512) == [(2049, 10), (1025, 5), (513, 3), (257, 2)]


def cog_structure(path):
    """IFD offsets, first-tile offsets, NewSubfileType and ghost metadata, via tifffile."""
    with tifffile.TiffFile(path) as tif:
        ghost = tifffile.read_gdal_structural_metadata(tif.filehandle)
        pages = list(tif.pages)
        with open(path, "rb") as fh:
            first_ifd = struct.unpack("<I", fh.read(8)[4:])[0]
        return {
            "first_ifd": first_ifd,
            "ifds": [p.offset for p in pages],
            "data": [min(p.dataoffsets) for p in pages],
            "subfiletype": [p.subfiletype for p in pages],
            "shapes": [(p.imagelength, p.imagewidth) for p in pages],
            "tiles": [(p.tilelength, p.tilewidth) for p in pages],
            "compression": {p.compression.name for p in pages},
            "ghost": ghost,
        }


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_cog_output_is_cloud_optimized(tmp_path, rng, interleave):
    data = rng.integers(1, 60000, (3, 600, 700), dtype=np.uint16)
    geotiff(tmp_path / "in.tif", data, interleave, nodata=0)
    cube = read_cube(tmp_path / "in.tif")
    out = write_cube(tmp_path / "cog.tif", cube.data, like=cube, cog=True)

    s = cog_structure(out)
    assert s["shapes"] == [(600, 700), (300, 350), (150, 175)]
    assert s["tiles"] == [(256, 256)] * 3 and s["compression"] == {"ADOBE_DEFLATE"}
    assert s["subfiletype"] == [0, 1, 1]
    assert s["first_ifd"] == s["ifds"][0] < 300  # right after header and ghost block
    assert s["ifds"] == sorted(s["ifds"])  # full resolution first, then overviews
    assert max(s["ifds"]) < min(s["data"])  # every IFD before any pixel data
    assert s["data"] == sorted(s["data"], reverse=True)  # smallest overview's data first
    assert s["ghost"]["LAYOUT"] == "IFDS_BEFORE_DATA"
    assert tags(out)[0] == tags(tmp_path / "in.tif")[0]  # georeference kept
    np.testing.assert_array_equal(read_cube(out).data, data)

    rasterio = rasterio_or_skip()
    with rasterio.open(out) as ds, rasterio.open(tmp_path / "in.tif") as src:
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
        assert (ds.crs, ds.transform, ds.nodata) == (src.crs, src.transform, src.nodata)
        assert ds.overviews(1) == [2, 4]
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"  # GDAL's own verdict
        np.testing.assert_array_equal(ds.read(), data)
        # the overviews hold every second pixel (decimation: no value invented)
        half = ds.read(out_shape=(3, 300, 350))
        np.testing.assert_array_equal(half, data[:, ::2, ::2])


def test_cog_small_float_cube_without_overviews(tmp_path, rng):
    data = rng.random((2, 30, 40)).astype(np.float32)
    out = write_cube(tmp_path / "c.tif", data, cog=True)
    s = cog_structure(out)
    assert s["shapes"] == [(30, 40)] and s["tiles"] == [(256, 256)]
    np.testing.assert_array_equal(read_cube(out).data, data)
    rasterio = rasterio_or_skip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning
        with rasterio.open(out) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            np.testing.assert_array_equal(ds.read(), data)


def test_cog_needs_a_tiff_output(tmp_path):
    with pytest.raises(OutputError, match="Cloud-Optimized GeoTIFF needs a .tif"):
        write_cube(tmp_path / "c.npy", np.zeros((1, 4, 4), np.uint8), cog=True)
    assert list(tmp_path.iterdir()) == []
