"""Nodata and bad bands: left out of the network, returned exactly as they were."""

import numpy as np
import pytest
import torch

import ras2s
from ras2s.io import cube_nodata, read_cube, write_cube

from .test_georef import geotiff, rasterio_or_skip


def test_geotiff_through_denoise_keeps_crs_transform_nodata(tmp_path, rng, tiny_model):
    rasterio = rasterio_or_skip()
    data = (rng.random((6, 40, 48)) * 1000).astype(np.float32)
    data[:, :5, :] = -9999.0  # a nodata strip, as at a scene edge
    profile = geotiff(tmp_path / "scene.tif", data)
    cube = read_cube(tmp_path / "scene.tif")
    result = ras2s.denoise(cube.data, model=tiny_model, nodata=cube_nodata(cube))
    out = write_cube(tmp_path / "scene_denoised.tif", result, like=cube)
    with rasterio.open(out) as ds:
        assert ds.count == 6
        assert ds.crs.to_epsg() == 32611
        assert ds.transform == profile["transform"]
        assert ds.res == (30.0, 30.0)
        assert ds.nodata == -9999.0
        assert ds.tags(1)["NAME"] == "first band"
        got = ds.read()
    np.testing.assert_array_equal(got[:, :5], -9999.0)
    assert got[:, 5:].min() > -1000  # nodata not smeared into the valid pixels


def test_tiff_cli_denoise_keeps_georeference(tmp_path, rng, tiny_weights):
    rasterio = rasterio_or_skip()
    from click.testing import CliRunner

    from ras2s.cli import main

    data = (rng.random((4, 32, 32)) * 100).astype(np.float32)
    data[:, -3:] = -9999.0
    profile = geotiff(tmp_path / "s.tif", data, "band")
    res = CliRunner().invoke(
        main, ["denoise", str(tmp_path / "s.tif"), "--weights", str(tiny_weights), "-q"]
    )
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "s_denoised.tif") as ds:
        assert (ds.count, ds.crs.to_epsg(), ds.transform, ds.nodata) == (
            4,
            32611,
            profile["transform"],
            -9999.0,
        )
        np.testing.assert_array_equal(ds.read()[:, -3:], -9999.0)


def test_info_leaves_nodata_out_of_the_range_and_the_normalisation(tmp_path, rng):
    rasterio_or_skip()
    from click.testing import CliRunner

    from ras2s.cli import main

    data = (rng.random((4, 32, 32)) * 100 + 50).astype(np.float32)
    data[:, :6] = -9999.0
    geotiff(tmp_path / "s.tif", data, "band")
    res = CliRunner().invoke(main, ["info", str(tmp_path / "s.tif"), "--json"])
    assert res.exit_code == 0, res.output
    import json

    fields = json.loads(res.output)
    assert fields["nodata"] == "-9999" and fields["nodata_values"] == 4 * 6 * 32
    assert 50 <= fields["min"] < fields["max"] <= 150
    assert "nodata left out" in fields["normalisation"]
    lo, hi = (
        float(v) for v in fields["normalisation"].split(": ")[-1].split(" map")[0].split(" .. ")
    )
    assert 50 <= lo < hi <= 150  # -9999 is nowhere near the range denoise uses


def _smooth(bands, h, w):
    from .test_assess import smooth_cube

    return smooth_cube(bands=bands, h=h, w=w, scale=1.0).astype(np.float32)


def test_nodata_frame_interior_quality_within_half_db():
    from ras2s.metrics import mpsnr

    rng = np.random.default_rng(0)
    clean = _smooth(16, 48, 48)
    noisy = (clean + 0.08 * rng.standard_normal(clean.shape)).astype(np.float32)
    framed = np.full((16, 64, 64), -9999, np.float32)
    framed[:, 8:56, 8:56] = noisy
    model = ras2s.load_model("default")
    out = ras2s.denoise(framed, model=model, nodata=-9999)
    np.testing.assert_array_equal(out[framed == -9999], -9999)  # returned exactly
    alone = ras2s.denoise(noisy, model=model)
    lo, hi = float(noisy.min()), float(noisy.max())

    def score(x):
        return mpsnr((x - lo) / (hi - lo), (clean - lo) / (hi - lo))

    framed_db, alone_db = score(out[:, 8:56, 8:56]), score(alone)
    assert alone_db > score(noisy) + 3  # the model denoises at all
    assert abs(framed_db - alone_db) < 0.5, (framed_db, alone_db)


class Spy(torch.nn.Module):
    """Identity network that records what it is fed."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return x


def test_skip_bands_pass_through_and_are_not_fed(rng):
    cube = rng.integers(100, 4000, (10, 16, 16)).astype(np.uint16)
    spy = Spy()
    out = ras2s.denoise(cube, model=spy, skip_bands=[0, 1, 9], normalise="minmax")
    assert out.dtype == np.uint16 and out.shape == cube.shape
    assert {x.shape[1] for x in spy.seen} == {7}
    np.testing.assert_array_equal(out, cube)  # identity model: exact round trip
    spy.seen.clear()
    bad = cube.copy()
    bad[[0, 1, 9]] = 65535  # wild bad bands do not enter the normalisation
    ras2s.denoise(bad, model=spy, skip_bands="0-1,9", normalise="minmax")
    x = torch.cat(spy.seen)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_nodata_left_out_of_normalisation_and_filled_with_band_mean(rng):
    cube = (rng.random((3, 12, 12)) * 10 + 100).astype(np.float32)
    cube[:, 5, 3:7] = -9999  # a hole inside the scene
    spy = Spy()
    out = ras2s.denoise(cube, model=spy, nodata=-9999, normalise="minmax")
    x = spy.seen[0][0].numpy()
    valid = cube != -9999
    assert x.shape == cube.shape and x.min() == 0.0 and x.max() == 1.0
    lo, hi = cube[valid].min(), cube[valid].max()
    means = (np.array([b[v].mean() for b, v in zip(cube, valid, strict=True)]) - lo) / (hi - lo)
    np.testing.assert_allclose(x[:, 5, 3], means, atol=1e-5)
    np.testing.assert_array_equal(out[:, 5, 3:7], -9999)
    np.testing.assert_allclose(out[valid], cube[valid], atol=1e-4)


def test_a_nodata_frame_is_cropped_away_before_the_network(rng):
    cube = (rng.random((3, 12, 14)) * 10 + 100).astype(np.float32)
    framed = np.full((3, 20, 20), -9999, np.float32)
    framed[:, 3:15, 4:18] = cube
    framed[1, 3, 4] = -9999  # missing in one band only: still inside the box
    spy = Spy()
    out = ras2s.denoise(framed, model=spy, nodata=-9999)
    assert spy.seen[0].shape == (1, 3, 12, 14)  # only the box of valid pixels
    np.testing.assert_array_equal(out[framed == -9999], -9999)
    inside = framed[:, 3:15, 4:18] != -9999
    np.testing.assert_allclose(out[:, 3:15, 4:18][inside], cube[inside], atol=1e-4)


def test_nan_nodata_hwb_and_torch(rng):
    cube = rng.random((12, 12, 5)).astype(np.float32)  # HWB
    cube[:2] = np.nan
    out = ras2s.denoise(torch.from_numpy(cube), model=Spy(), nodata=float("nan"), layout="HWB")
    assert isinstance(out, torch.Tensor) and out.shape == cube.shape
    assert torch.isnan(out[:2]).all() and not torch.isnan(out[2:]).any()


def test_band_list_errors():
    from ras2s.errors import InputError
    from ras2s.inference import parse_band_list

    assert parse_band_list("0-2, 5,7-7") == [0, 1, 2, 5, 7]
    with pytest.raises(InputError, match="0-based"):
        parse_band_list("a-b")
    with pytest.raises(InputError, match="end before start"):
        parse_band_list("5-2")
    with pytest.raises(InputError, match="outside"):
        parse_band_list("3-12", 10)


def test_envi_bbl_and_data_ignore_value_through_the_cli(tmp_path, rng, tiny_weights):
    from click.testing import CliRunner

    from ras2s.cli import main

    from .test_georef import envi_cube

    data = (rng.random((6, 16, 16)) * 100).astype(np.float32)
    data[:, :, :2] = -9999
    data[0] = 5000  # band 0 is marked bad (bbl = 0): wild values pass through
    envi_cube(tmp_path / "in.hdr", data, "bsq")
    res = CliRunner().invoke(
        main, ["denoise", str(tmp_path / "in.hdr"), "--weights", str(tiny_weights), "-q"]
    )
    assert res.exit_code == 0, res.output
    out = read_cube(tmp_path / "in_denoised.hdr")
    np.testing.assert_array_equal(out.data[[0, 5]], data[[0, 5]])
    np.testing.assert_array_equal(out.data[1:, :, :2], -9999)
    assert out.data[1:5, :, 2:].max() < 1000
    assert [int(v) for v in out.metadata["bbl"]] == [0, 1, 1, 1, 1, 0]


def test_a_valid_pixel_denoised_onto_nodata_moves_off_it():
    from ras2s.inference import denoise_masked

    cube = np.full((3, 8, 8), 500, np.uint16)
    cube[:, 0, 0] = 0  # nodata
    onto = np.zeros((3, 8, 8), bool)
    onto[:, 4, 4] = True  # a valid pixel the "denoiser" sends to 0
    out = denoise_masked(cube, lambda a: np.where(onto, 0, a).astype(a.dtype), nodata=0)
    np.testing.assert_array_equal(out[:, 0, 0], 0)  # nodata stays nodata
    np.testing.assert_array_equal(out[:, 4, 4], 1)  # valid stays valid
    assert (out == 0).sum() == 3
