"""Georeference, nodata and band metadata kept through read -> denoise -> write."""

import warnings

import numpy as np
import pytest
import tifffile
from spectral.io import envi

from ras2s.io import GEOTIFF_TAGS, bad_bands, cube_nodata, read_cube, write_cube

WKT = (
    'PROJCS["WGS_1984_UTM_Zone_11N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",'
    'SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],'
    'UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
    'PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],'
    'PARAMETER["Central_Meridian",-117.0],PARAMETER["Scale_Factor",0.9996],'
    'PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]'
)


def rasterio_or_skip():
    return pytest.importorskip(
        "rasterio",
        reason="rasterio (GDAL) is not installed: pip install 'ras2s[geo]' to check outputs "
        "with the reader GIS tools use",
    )


def geotiff(path, data, interleave="pixel", nodata=-9999.0):
    """A GeoTIFF written by GDAL (rasterio): EPSG:32611, 30 m pixels."""
    rasterio = rasterio_or_skip()
    from rasterio.transform import Affine

    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": str(data.dtype),
        "crs": "EPSG:32611",
        "transform": Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0),
        "nodata": nodata,
        "interleave": interleave,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(1, NAME="first band")
    return profile


def tags(path):
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        return {t.code: t.value for t in page.tags.values() if t.code in GEOTIFF_TAGS}, page


@pytest.mark.parametrize("planar", ["separate", "contig"])
def test_tiff_one_page_with_input_planar_config(tmp_path, rng, planar):
    data = rng.integers(0, 4000, (31, 48, 64), dtype=np.uint16)
    stored = data if planar == "separate" else data.transpose(1, 2, 0)
    tifffile.imwrite(tmp_path / "in.tif", stored, photometric="minisblack", planarconfig=planar)
    cube = read_cube(tmp_path / "in.tif")
    np.testing.assert_array_equal(cube.data, data)
    out = write_cube(tmp_path / "out.tif", cube.data, like=cube)
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == 1
        assert tif.pages.first.planarconfig.name == planar.upper()
        assert tif.pages.first.samplesperpixel == 31
    np.testing.assert_array_equal(read_cube(out).data, data)
    rasterio = pytest.importorskip("rasterio", reason="rasterio (GDAL) is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning
        with rasterio.open(tmp_path / "in.tif") as a, rasterio.open(out) as b:
            assert a.count == b.count == 31
            np.testing.assert_array_equal(b.read(), data)


def test_multipage_tiff_becomes_one_page(tmp_path, rng):
    data = rng.random((7, 16, 20)).astype(np.float32)
    tifffile.imwrite(tmp_path / "pages.tif", data, photometric="minisblack")  # 7 pages
    cube = read_cube(tmp_path / "pages.tif")
    out = write_cube(tmp_path / "out.tif", cube.data, like=cube)
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == 1 and tif.pages.first.samplesperpixel == 7
    np.testing.assert_array_equal(read_cube(out).data, data)


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_geotiff_tags_round_trip(tmp_path, rng, interleave):
    data = rng.random((5, 24, 32)).astype(np.float32)
    geotiff(tmp_path / "geo.tif", data, interleave)
    cube = read_cube(tmp_path / "geo.tif")
    assert cube_nodata(cube) == -9999.0
    assert {c for c, *_ in cube.metadata["geotiff_tags"]} >= {33550, 33922, 34735, 42112, 42113}
    out = write_cube(tmp_path / "out.tif", cube.data * 2, like=cube)
    before, _ = tags(tmp_path / "geo.tif")
    after, page = tags(out)
    assert after == before
    assert page.planarconfig.name == {"pixel": "CONTIG", "band": "SEPARATE"}[interleave]


def envi_cube(path, data, interleave="bil"):
    bands = data.shape[0]
    meta = {
        "wavelength": [f"{400 + 10 * i:.1f}" for i in range(bands)],
        "fwhm": ["10.0"] * bands,
        "bbl": ["0"] + ["1"] * (bands - 2) + ["0"],
        "wavelength units": "Nanometers",
        "map info": [
            "UTM",
            "1.000",
            "1.000",
            "500000.000",
            "4100000.000",
            "30.0",
            "30.0",
            "11",
            "North",
            "WGS-84",
            "units=Meters",
        ],
        "coordinate system string": "{" + WKT + "}",
        "data ignore value": "-9999",
    }
    envi.save_image(
        str(path),
        data.transpose(1, 2, 0),
        dtype=data.dtype,
        interleave=interleave,
        metadata=meta,
        force=True,
        ext=".img",
    )


def test_envi_keeps_georeference_and_band_metadata(tmp_path, rng):
    data = rng.random((6, 12, 10)).astype(np.float32)
    envi_cube(tmp_path / "in.hdr", data)
    cube = read_cube(tmp_path / "in.hdr")
    assert cube.metadata["coordinate system string"] == WKT
    assert cube_nodata(cube) == -9999.0 and bad_bands(cube) == [0, 5]
    out = write_cube(tmp_path / "out.hdr", cube.data, like=cube)
    back = read_cube(out)
    np.testing.assert_array_equal(back.data, data)
    for key in (
        "map info",
        "coordinate system string",
        "wavelength",
        "fwhm",
        "bbl",
        "data ignore value",
        "wavelength units",
    ):
        assert back.metadata[key] == cube.metadata[key], key
    assert back.layout == "HBW"  # bil kept
    text = (tmp_path / "out.hdr").read_text()
    assert "coordinate system string = {" + WKT + "}" in text


def test_envi_through_gdal(tmp_path, rng):
    rasterio = rasterio_or_skip()
    data = rng.random((4, 12, 10)).astype(np.float32)
    envi_cube(tmp_path / "in.hdr", data, "bsq")
    out = write_cube(tmp_path / "out.hdr", data, like=read_cube(tmp_path / "in.hdr"))
    with rasterio.open(out.with_suffix(".img")) as ds:
        assert ds.count == 4
        assert ds.crs is not None and ds.crs.to_epsg() == 32611
        assert ds.transform.a == 30.0 and ds.transform.c == 500000.0
        assert ds.nodata == -9999.0
