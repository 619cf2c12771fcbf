"""A valid pixel whose denoised value equals nodata is moved off it (issue 23)."""

import numpy as np
import pytest

from ras2s.io import cube_nodata, read_cube, write_cube
from ras2s.nodata import keep_off_nodata


def test_uint16_nodata_zero_moves_valid_zeros_to_one():
    result = np.array([[[0, 0, 5], [9, 0, 0]]], np.uint16)
    valid = np.array([[[True, False, True], [True, True, False]]])
    out = keep_off_nodata(result, valid, 0)
    np.testing.assert_array_equal(out, [[[1, 0, 5], [9, 1, 0]]])
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(result, [[[0, 0, 5], [9, 0, 0]]])  # input untouched


def test_nodata_at_the_top_of_the_range_moves_down():
    result = np.array([[[65535, 100]]], np.uint16)
    np.testing.assert_array_equal(keep_off_nodata(result, None, 65535), [[[65534, 100]]])
    result = np.array([[[127, -128]]], np.int8)
    np.testing.assert_array_equal(keep_off_nodata(result, None, 127), [[[126, -128]]])
    np.testing.assert_array_equal(keep_off_nodata(result, None, -128), [[[127, -127]]])


def test_nodata_inside_the_range_moves_towards_its_bands_data():
    result = np.array([[[-9999, 1000, 1200]], [[-9999, -20000, -15000]]], np.int16)
    out = keep_off_nodata(result, None, -9999)
    np.testing.assert_array_equal(out, [[[-9998, 1000, 1200]], [[-10000, -20000, -15000]]])


def test_float_moves_by_one_ulp_and_nan_nodata_needs_nothing():
    result = np.array([[[-9999.0, 3.5]]], np.float32)
    out = keep_off_nodata(result, None, -9999.0)
    assert out[0, 0, 0] == np.nextafter(np.float32(-9999.0), np.float32(1))
    assert out[0, 0, 1] == 3.5
    assert keep_off_nodata(result, None, float("nan")) is result


@pytest.mark.parametrize("nodata", [None, 70000, -1, 0.5])
def test_nothing_to_move_returns_the_input(nodata):
    result = np.array([[[0, 1, 65535]]], np.uint16)
    assert keep_off_nodata(result, None, nodata) is result


def test_valid_mask_broadcasts_and_shape_is_checked():
    result = np.zeros((3, 2, 2), np.uint8)
    valid = np.array([[True, False], [False, False]])  # (H, W): same pixels in every band
    out = keep_off_nodata(result, valid, 0)
    assert (out[:, 0, 0] == 1).all() and (out[:, 1:, :] == 0).all() and (out[:, 0, 1] == 0).all()
    with pytest.raises(ValueError, match=r"\(bands, H, W\)"):
        keep_off_nodata(np.zeros((2, 2), np.uint8), None, 0)


def test_written_geotiff_keeps_a_valid_pixel_valid(tmp_path):
    from tests.test_georef import geotiff

    data = np.full((2, 8, 8), 500, np.uint16)
    data[:, :2] = 0  # nodata rows
    geotiff(tmp_path / "in.tif", data, nodata=0)
    cube = read_cube(tmp_path / "in.tif")
    nodata = cube_nodata(cube)
    denoised = data.copy()
    denoised[0, 5, 5] = 0  # a valid pixel denoised down to nodata
    fixed = keep_off_nodata(denoised, cube.data != nodata, nodata)
    back = read_cube(write_cube(tmp_path / "out.tif", fixed, like=cube)).data
    assert back[0, 5, 5] == 1
    assert ((back == 0) == (data == 0)).all()  # exactly the input's nodata pixels
