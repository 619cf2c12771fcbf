"""Dask arrays and xarray DataArrays through ``ras2s.denoise`` (ras2s.lazy), on threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

da = pytest.importorskip("dask.array", reason="dask is not installed (extra: ras2s[scale])")
xr = pytest.importorskip("xarray", reason="xarray is not installed (extra: ras2s[scale])")

import ras2s  # noqa: E402
from ras2s import distributed, lazy  # noqa: E402
from ras2s.errors import InputError  # noqa: E402
from ras2s.inference import normalisation_range  # noqa: E402
from ras2s.ranges import clean_range  # noqa: E402


class Counting(torch.nn.Module):
    """A network that counts its runs (the tiny model inside)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


@pytest.fixture
def scene(rng) -> np.ndarray:
    """A smooth (8, 40, 36) float32 scene with noise and a few impulses, in 100s."""
    y, x = np.mgrid[0:40, 0:36] / 36
    lam = np.linspace(0, 1, 8)[:, None, None]
    clean = 300 + 900 * (0.5 + 0.4 * np.sin(4 * x + 2 * lam) * np.cos(3 * y))
    noisy = clean + 40 * rng.standard_normal(clean.shape)
    noisy[3, 5, 7] = 5000  # an impulse: minmax sees it, clean does not
    return noisy.astype(np.float32)


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    distributed._MODELS.clear()
    yield
    distributed._MODELS.clear()


@pytest.mark.parametrize("chunks", [(8, 40, 36), (3, 17, 11), (1, 9, 36)])
def test_clean_range_by_dask_equals_clean_range(scene, chunks):
    lo, hi = lazy.clean_range(da.from_array(scene, chunks=chunks))
    ref = clean_range(scene)
    assert np.allclose((lo, hi), ref, rtol=0, atol=1e-12 * (ref[1] - ref[0]))
    ints = np.rint(scene).astype(np.uint16)
    ref = clean_range(ints)
    got = lazy.clean_range(da.from_array(ints, chunks=chunks))
    assert np.allclose(got, ref, rtol=0, atol=1e-12 * (ref[1] - ref[0]))


@pytest.mark.parametrize("how", ["clean", "minmax", "percentile", "none"])
@pytest.mark.parametrize("with_nan", [False, True])
def test_value_range_equals_the_numpy_path(scene, how, with_nan):
    cube = scene.copy()
    if with_nan:
        cube[2, 10:12, 3] = np.nan
        cube[7, 0, :] = np.inf
    lo, hi, fills, _ = lazy.value_range(da.from_array(cube, chunks=(3, 13, 16)), how, "fill")
    _, ref_lo, ref_hi = normalisation_range(cube, how)
    span = ref_hi - ref_lo
    assert abs(lo - ref_lo) <= 1e-12 * span and abs(hi - ref_hi) <= 1e-12 * span
    assert (fills is not None) == with_nan


def test_nan_is_an_error_unless_filled(scene):
    cube = scene.copy()
    cube[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="1 NaN or Inf values"):
        lazy.value_range(da.from_array(cube, chunks=20), "minmax")


def test_dask_in_gives_lazy_dask_out_and_nothing_runs_before_compute(scene, tiny_model):
    model = Counting(tiny_model)
    x = da.from_array(scene, chunks=(8, 20, 18))
    out = ras2s.denoise(x, model=model, normalise="minmax", overlap=8)
    assert isinstance(out, da.Array)
    assert (out.shape, out.dtype, out.chunks) == (x.shape, x.dtype, x.chunks)
    assert model.calls == 0  # the range was computed, the network has not run
    result = out.compute()
    assert model.calls == 4  # once per chunk (each fits the budget: one tile)
    assert isinstance(result, np.ndarray) and np.isfinite(result).all()


def test_one_chunk_equals_the_numpy_path_exactly(scene, tiny_model):
    # one chunk, one tile, the same range (minmax: no second pass): bit for bit
    ref = ras2s.denoise(scene, model=tiny_model, normalise="minmax")
    got = ras2s.denoise(da.from_array(scene), model=tiny_model, normalise="minmax").compute()
    np.testing.assert_array_equal(got, ref)
    hwb = np.ascontiguousarray(scene.transpose(1, 2, 0))
    got = ras2s.denoise(da.from_array(hwb), model=tiny_model, normalise="minmax", layout="HWB")
    np.testing.assert_array_equal(got.compute(), ref.transpose(1, 2, 0))


def test_integer_cube_and_band_chunks(scene, tiny_model):
    ints = np.rint(scene).astype(np.uint16)
    x = da.from_array(ints, chunks=(3, 40, 36))  # band chunks: rechunked whole
    report: dict = {}
    out = ras2s.denoise(x, model=tiny_model, normalise="clean", report=report)
    assert out.numblocks == (1, 1, 1) and out.dtype == np.uint16
    assert report["normalise"] == "clean" and report["first_pass_range"] is None
    assert np.allclose(report["range"], clean_range(ints), rtol=1e-12)
    ref = ras2s.denoise(ints, model=tiny_model, normalise="minmax")
    got = ras2s.denoise(x, model=tiny_model, normalise="minmax").compute()
    np.testing.assert_array_equal(got, ref)


def test_dataarray_in_dataarray_out_with_dims_coords_attrs(scene, tiny_model):
    rioxarray = pytest.importorskip("rioxarray", reason="rioxarray is not installed")
    del rioxarray
    hwb = np.ascontiguousarray(scene.transpose(1, 2, 0))
    array = xr.DataArray(
        hwb,
        dims=("y", "x", "wavelength"),
        coords={
            "y": 1000.0 - 30 * np.arange(40),
            "x": 500.0 + 30 * np.arange(36),
            "wavelength": np.linspace(400, 1000, 8),
        },
        attrs={"units": "DN", "sensor": "test"},
        name="radiance",
    )
    array = array.rio.write_crs("EPSG:32633")
    ref = ras2s.denoise(scene, model=tiny_model, normalise="minmax")
    for data in (array, array.chunk({"y": 40, "x": 36})):
        out = ras2s.denoise(data, model=tiny_model, normalise="minmax")
        assert isinstance(out, xr.DataArray)
        assert out.dims == array.dims and out.name == "radiance"
        assert out.attrs == array.attrs
        xr.testing.assert_identical(out.coords.to_dataset(), array.coords.to_dataset())
        assert out.rio.crs == array.rio.crs and out.rio.transform() == array.rio.transform()
        assert out.chunks == data.chunks  # dask stays dask, numpy stays numpy
        np.testing.assert_array_equal(out.transpose("wavelength", "y", "x").values, ref)


def test_dataarray_band_axis_by_name_or_layout():
    cube = np.zeros((4, 5, 6))
    assert lazy.band_axis(xr.DataArray(cube, dims=("y", "x", "Band"))) == 2
    assert lazy.band_axis(xr.DataArray(cube, dims=("bands", "y", "x"))) == 0
    assert lazy.band_axis(xr.DataArray(cube, dims=("a", "b", "c")), "HWB") == 2
    with pytest.raises(InputError, match="layout"):
        lazy.band_axis(cube, "BWH")


def test_rioxarray_open_rasterio_chunks_keep_the_crs(tmp_path, scene, tiny_model):
    rioxarray = pytest.importorskip("rioxarray", reason="rioxarray is not installed")
    rasterio = pytest.importorskip("rasterio", reason="rasterio is not installed")
    from rasterio.transform import from_origin

    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=36, height=40, count=8, dtype="float32")
    transform = from_origin(500000, 4100000, 30, 30)
    with rasterio.open(path, "w", crs="EPSG:32633", transform=transform, **profile) as dst:
        dst.write(scene)
    opened = rioxarray.open_rasterio(path, chunks={"band": 8, "y": 20, "x": 18})
    out = ras2s.denoise(opened, model=tiny_model)
    assert isinstance(out.data, da.Array) and out.dims == ("band", "y", "x")
    assert out.rio.crs.to_epsg() == 32633 and out.rio.transform() == transform
    saved = tmp_path / "out.tif"
    out.rio.to_raster(saved)
    with rasterio.open(saved) as src:
        assert src.crs.to_epsg() == 32633 and src.transform == transform
        assert np.isfinite(src.read()).all()


def test_named_weights_are_loaded_once_per_process(scene, tiny_weights, monkeypatch):
    import ras2s.weights

    loads = []
    real = ras2s.weights.load_model

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ras2s.weights, "load_model", counting)
    x = da.from_array(scene, chunks=(8, 10, 12))  # 12 chunks on dask's threads
    out = ras2s.denoise(x, weights=tiny_weights, normalise="minmax").compute()
    assert np.isfinite(out).all() and len(loads) == 1


def test_refused_inputs_say_why_in_one_line(scene, tiny_model):
    x = da.from_array(scene)
    for kwargs in ({"nodata": 0.0}, {"skip_bands": [1]}):
        with pytest.raises(InputError, match="not supported for dask input") as err:
            ras2s.denoise(x, model=tiny_model, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="DataArray"):
        ras2s.denoise(xr.Dataset({"a": (("b", "y", "x"), scene)}), model=tiny_model)
    with pytest.raises(InputError, match="3-D"):
        ras2s.denoise(da.zeros((4, 5)), model=tiny_model)


def test_constant_dask_cube_comes_back_unchanged(tiny_model):
    x = da.full((4, 16, 16), 7.0, chunks=8, dtype=np.float32)
    with pytest.warns(UserWarning, match="constant"):
        out = ras2s.denoise(x, model=tiny_model)
    np.testing.assert_array_equal(out.compute(), 7.0)
