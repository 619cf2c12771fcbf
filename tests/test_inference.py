"""denoise(): normalisation, layouts, dtypes, tiling, memory budget, NaN policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ras2s.errors import InputError
from ras2s.inference import choose_tile, denoise, network_bytes


def _cube(rng, shape=(6, 40, 48), lo=100.0, hi=900.0):
    return (lo + (hi - lo) * rng.random(shape)).astype(np.float32)


def test_same_shape_dtype_and_input_untouched(rng, tiny_model):
    cube = _cube(rng)
    before = cube.copy()
    out = denoise(cube, model=tiny_model)
    assert out.shape == cube.shape and out.dtype == cube.dtype
    assert np.array_equal(cube, before)


def test_whole_image_equals_the_network_on_the_normalised_cube(rng, tiny_model):
    cube = _cube(rng)
    lo, hi = cube.min(), cube.max()
    with torch.inference_mode():
        expected = tiny_model(torch.from_numpy((cube - lo) / (hi - lo))[None])[0].numpy()
    expected = expected * (hi - lo) + lo
    out = denoise(cube, model=tiny_model, normalise="minmax")
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)


def test_hwb_layout_round_trips(rng, tiny_model):
    cube = _cube(rng)
    out_bhw = denoise(cube, model=tiny_model)
    out_hwb = denoise(np.ascontiguousarray(cube.transpose(1, 2, 0)), model=tiny_model, layout="HWB")
    assert out_hwb.shape == (40, 48, 6)
    np.testing.assert_allclose(out_hwb.transpose(2, 0, 1), out_bhw, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float64])
def test_dtypes_are_kept_and_integers_clipped(rng, tiny_model, dtype):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        cube = rng.integers(info.min, info.max, size=(5, 24, 24), endpoint=True).astype(dtype)
    else:
        cube = rng.random((5, 24, 24)).astype(dtype)
    out = denoise(cube, model=tiny_model)
    assert out.dtype == dtype
    if np.issubdtype(dtype, np.integer):
        assert out.min() >= np.iinfo(dtype).min and out.max() <= np.iinfo(dtype).max


def test_torch_input_gives_torch_output(rng, tiny_model):
    cube = torch.from_numpy(_cube(rng))
    out = denoise(cube, model=tiny_model)
    assert isinstance(out, torch.Tensor) and out.shape == cube.shape


def test_constant_cube_is_returned_unchanged_with_a_warning(tiny_model):
    cube = np.full((4, 16, 16), 7.5, dtype=np.float32)
    with pytest.warns(UserWarning, match="constant"):
        out = denoise(cube, model=tiny_model)
    assert np.array_equal(out, cube) and out is not cube


def test_nan_is_an_error_by_default_and_filled_on_request(rng, tiny_model):
    cube = _cube(rng)
    cube[2, 5, 5] = np.nan
    cube[3, 0, 0] = np.inf
    with pytest.raises(InputError, match="2 NaN or Inf values.*nan_policy='fill'"):
        denoise(cube, model=tiny_model)
    with pytest.warns(UserWarning, match="2 NaN/Inf values replaced"):
        out = denoise(cube, model=tiny_model, nan_policy="fill")
    assert np.isfinite(out).all()


@pytest.mark.parametrize("shape", [(5, 8), (5, 8, 8, 1), (0, 8, 8)])
def test_bad_shapes(tiny_model, shape):
    with pytest.raises(InputError, match="3-D|empty"):
        denoise(np.ones(shape, np.float32), model=tiny_model)


def test_bad_layout(rng, tiny_model):
    with pytest.raises(InputError, match="layout"):
        denoise(_cube(rng), model=tiny_model, layout="WHB")


def _seam_score(out: np.ndarray, whole: np.ndarray) -> float:
    """Largest extra column-to-column jump of ``out`` over the whole-image output."""
    extra = np.abs(np.diff(out, axis=2) - np.diff(whole, axis=2)).mean(axis=(0, 1))
    return float(extra.max() / np.abs(np.diff(whole, axis=2)).mean())


def test_tiled_output_is_close_to_whole_and_seam_free(rng, tiny_model):
    bands, h, w = 6, 96, 96
    yy, xx = np.mgrid[0:h, 0:w] / 96.0
    cube = np.stack([np.sin(3 * xx + b) * np.cos(2 * yy) for b in range(bands)]).astype(np.float32)
    cube += 0.02 * rng.standard_normal(cube.shape).astype(np.float32)
    whole = denoise(cube, model=tiny_model)
    blended = denoise(cube, model=tiny_model, tile=40, overlap=16)
    hard_cuts = denoise(cube, model=tiny_model, tile=40, overlap=0)
    assert np.abs(blended - whole).mean() < 0.05 * np.abs(whole).mean()
    # Blending keeps every column step within 5% of the whole-image step; the same tiles
    # without overlap (hard cuts) do not, which shows the check can fail.
    assert _seam_score(blended, whole) < 0.05
    assert _seam_score(hard_cuts, whole) > 2 * _seam_score(blended, whole)


def test_memory_budget_picks_a_tile_that_fits():
    bands, h, w = 31, 2048, 2048
    fixed = 2 * bands * h * w * 4 + h * w * 4
    tile = choose_tile(bands, h, w, max_memory=2 << 30, fixed_bytes=fixed)
    assert 64 <= tile < 2048
    assert network_bytes(bands, tile * tile) + fixed <= 2 << 30
    assert choose_tile(31, 64, 64, max_memory=2 << 30, fixed_bytes=0) == 64


def test_memory_budget_too_small_warns(rng, tiny_model):
    with pytest.warns(UserWarning):
        denoise(_cube(rng, (4, 40, 40)), model=tiny_model, max_memory=1000)


def test_progress_bar_runs(rng, tiny_model, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        denoise(_cube(rng), model=tiny_model, tile=24, overlap=8, progress=True)
    assert "tile" in capsys.readouterr().err


def test_normalise_none_feeds_the_cube_as_it_is(rng, tiny_model):
    cube = rng.random((5, 20, 20)).astype(np.float32) * 1.4 - 0.2
    with torch.inference_mode():
        expected = tiny_model(torch.from_numpy(cube)[None])[0].numpy()
    np.testing.assert_allclose(
        denoise(cube, model=tiny_model, normalise="none"), expected, atol=1e-5
    )


def test_percentile_normalisation_ignores_outliers(rng, tiny_model):
    from ras2s.inference import _value_range

    cube = rng.random((5, 40, 40)).astype(np.float32)
    spiky = cube.copy()
    spiky[0, 0, 0] = 1000.0  # one hot pixel
    assert _value_range(spiky, "minmax", "error")[1] == 1000.0
    lo, hi, _ = _value_range(spiky, "percentile", "error")
    assert 0.0 <= lo < 0.02 and 0.98 < hi <= 1.0
    # Away from the hot pixel, the percentile mapping denoises as if it were not there.
    robust = denoise(spiky, model=tiny_model, normalise="percentile")
    plain = denoise(cube, model=tiny_model, normalise="percentile")
    assert np.abs(robust[1:] - plain[1:]).mean() < 0.02
    with pytest.raises(InputError, match="normalise"):
        denoise(cube, model=tiny_model, normalise="zscore")


def test_auto_normalisation_is_what_the_weights_card_asks(rng, tiny_model, tmp_path):
    from ras2s.inference import resolve_normalise
    from ras2s.weights import load_model, save_weights

    cube = _cube(rng)
    cube[0, 0, 0] = 50 * cube.max()  # an outlier: the two normalisations differ
    assert resolve_normalise("auto", tiny_model) == "clean"  # no card: the clean range
    np.testing.assert_array_equal(
        denoise(cube, model=tiny_model), denoise(cube, model=tiny_model, normalise="clean")
    )
    path = tmp_path / "percentile.pt"
    save_weights(tiny_model, path, card={"inference": {"normalise": "percentile"}})
    model = load_model(path, precision="fp32")
    assert resolve_normalise("auto", model) == "percentile"
    by_card = denoise(cube, model=model)
    np.testing.assert_array_equal(by_card, denoise(cube, model=model, normalise="percentile"))
    assert not np.array_equal(by_card, denoise(cube, model=model, normalise="minmax"))
    # the same when denoise loads the weights itself
    np.testing.assert_array_equal(denoise(cube, weights=path, precision="fp32"), by_card)
    model.card = {"inference": {"normalise": "zscore"}}
    with pytest.raises(InputError, match="zscore"):
        denoise(cube, model=model)


def test_budget_tiles_are_balanced_so_little_area_is_computed_twice(rng, tiny_model, monkeypatch):
    import ras2s.inference as inference

    seen = {}
    real_run_tiled = inference.run_tiled

    def spy(data, fn, *, tile, overlap, **kwargs):
        seen["tile"], seen["overlap"] = tile, overlap
        return real_run_tiled(data, fn, tile=tile, overlap=overlap, **kwargs)

    monkeypatch.setattr(inference, "run_tiled", spy)
    cube = rng.random((4, 100, 60), dtype=np.float32)
    bands, h, w = cube.shape
    fixed = cube.nbytes * 2 + h * w * 4
    budget = fixed + network_bytes(bands, 50 * 50, 4) + 1
    denoise(cube, model=tiny_model, max_memory=budget)
    largest = choose_tile(bands, h, w, max_memory=budget, fixed_bytes=fixed, channels=4)
    assert largest == 48 and seen["overlap"] == 12
    # 3 x 42 pixels down the 100-pixel side and 2 x 36 across the 60 (instead of 3 and 2
    # tiles of 48): the same tile count, and only the overlap strips computed twice.
    assert seen["tile"] == (42, 36)


# --- issue 13: never garbage, never a hang ----------------------------------------------


@pytest.mark.parametrize(
    ("make", "dtype"),
    [
        (lambda r: np.float32(3e38) * (r.random((4, 16, 16)) * 2 - 1), np.float32),
        (lambda r: 1e307 * (r.random((4, 16, 16)) * 2 - 1), np.float64),
        (lambda r: 1000 + 0.001 * r.standard_normal((4, 16, 16)), np.float64),
    ],
    ids=["float32-near-max", "float64-near-max", "offset-1000-range-0.004"],
)
def test_a_finite_cube_gives_a_finite_faithful_output(tiny_model, rng, make, dtype):
    cube = make(rng).astype(dtype)
    out = denoise(cube, model=tiny_model)
    assert out.dtype == dtype and np.isfinite(out).all()
    assert len(np.unique(out)) > out.size // 2  # no collapse to a few levels
    assert out.max() <= np.finfo(dtype).max


@pytest.mark.parametrize("scale", [1e308, 1e-310])
def test_a_range_float64_cannot_normalise_is_refused(tiny_model, rng, scale):
    cube = scale * (rng.random((4, 8, 8)) * 2 - 1) if scale > 1 else scale * rng.random((4, 8, 8))
    with pytest.raises(InputError, match="range too"):
        denoise(cube, model=tiny_model, normalise="minmax")
    if scale > 1:  # the clean range of +-1e308 noise is narrower, and representable
        assert np.isfinite(denoise(cube, model=tiny_model, normalise="clean")).all()


@pytest.mark.parametrize(("tile", "overlap"), [(8, 8), (8, 9), (16, 40)])
def test_overlap_not_below_the_tile_is_an_error(tiny_model, rng, tile, overlap):
    with pytest.raises(InputError, match="must be smaller than the tile"):
        denoise(
            rng.random((4, 32, 32)).astype(np.float32), model=tiny_model, tile=tile, overlap=overlap
        )


def test_bad_budget_tile_and_device_are_input_errors(tiny_model, rng):
    from ras2s.inference import resolve_device

    cube = rng.random((4, 16, 16)).astype(np.float32)
    for kwargs, match in (
        ({"max_memory": 0}, "max_memory"),
        ({"tile": 0}, "tile"),
        ({"overlap": -1}, "overlap"),
    ):
        with pytest.raises(InputError, match=match):
            denoise(cube, model=tiny_model, **kwargs)
    for device in ("gpu", "cuda:7", "meta"):
        with pytest.raises(InputError, match="device"):
            resolve_device(device)


def test_a_network_returning_nan_is_refused(rng):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return x * float("nan")

    with pytest.raises(InputError, match="NaN or Inf"):
        denoise(rng.random((4, 8, 8)).astype(np.float32), model=Broken())


class _Scaled(torch.nn.Module):
    """A 'network' returning its input times ``factor`` (plus ``offset``)."""

    def __init__(self, factor: float, offset: float = 0.0):
        super().__init__()
        self.factor, self.offset = factor, offset

    def forward(self, x):
        return x * self.factor + self.offset


@pytest.mark.parametrize("normalise", ["clean", "minmax", "percentile", "none"])
def test_a_diverging_network_is_an_error_not_data(rng, normalise):
    cube = rng.random((5, 16, 16)).astype(np.float32)
    ok = denoise(cube, model=_Scaled(1.0, 0.5), normalise=normalise)  # shifted: still data
    assert ok.shape == cube.shape
    with pytest.raises(InputError, match="diverge"):
        denoise(cube, model=_Scaled(1e6), normalise=normalise)
    with pytest.raises(InputError, match="NaN or Inf"):
        denoise(cube, model=_Scaled(float("nan")), normalise=normalise)


class _Fragile(torch.nn.Module):
    """Identity on short, in-range inputs; 'diverges' (x 1e6) on long or bright ones."""

    def __init__(self, max_bands: int = 31, max_value: float = 1e9):
        super().__init__()
        self.max_bands, self.max_value = max_bands, max_value
        self.calls: list[tuple[int, float]] = []

    def forward(self, x):
        self.calls.append((x.shape[1], float(x.max())))
        if x.shape[1] > self.max_bands or float(x.max()) > self.max_value:
            return x * 1e6
        return x


def test_a_divergence_is_retried_in_band_windows_then_with_minmax(rng, monkeypatch):
    import ras2s.ranges
    from ras2s.errors import DivergenceError, FallbackWarning

    cube = (rng.random((40, 16, 16)) * 1000).astype(np.float32)
    # 1. diverges on 40 bands at once, not in 31-band windows: the windows are used
    report: dict = {}
    with pytest.warns(FallbackWarning) as caught:
        out = denoise(cube, model=_Fragile(), normalise="minmax", report=report)
    np.testing.assert_allclose(out, cube, rtol=1e-5, atol=1e-3)  # identity, blended windows
    (message,) = [str(w.message) for w in caught]
    assert "\n" not in message and "diverged on the whole cube" in message
    assert "31-band windows" in message and "--strict" in message
    assert report["band_window"] == 31 and report["normalise"] == "minmax"
    assert [f["band_window"] for f in report["fallback"]] == [None]
    # 2. diverges on values above 1 too: the bright cube falls back to minmax at last
    bright = cube.copy()
    bright[:, :2, :2] = 5000.0  # a few bright pixels, above the estimated clean range
    fragile = _Fragile(max_value=1.0 + 1e-6)
    estimates = []
    real_clean_range = ras2s.ranges.clean_range
    monkeypatch.setattr(
        ras2s.ranges,
        "clean_range",
        lambda *a, **k: estimates.append(1) or real_clean_range(*a, **k),
    )
    report = {}
    with pytest.warns(FallbackWarning, match="'minmax' normalisation instead"):
        out = denoise(bright, model=fragile, normalise="clean", report=report)
    np.testing.assert_allclose(out, bright, rtol=1e-5, atol=1e-2)
    assert [(f["normalise"], f["band_window"]) for f in report["fallback"]] == [
        ("clean", None),
        ("clean", 31),
    ]
    assert (report["normalise"], report["band_window"]) == ("minmax", 31)
    assert len(estimates) == 1  # the retry in band windows reused the clean estimate
    # 3. strict: the first divergence is the error, nothing retried
    strict = _Fragile()
    with pytest.raises(DivergenceError, match="diverge"):
        denoise(cube, model=strict, normalise="minmax", strict=True)
    assert [bands for bands, _ in strict.calls] == [40]
    # 4. a network that diverges everywhere still ends in the error
    with pytest.raises(DivergenceError):
        denoise(cube, model=_Scaled(1e6))


def test_no_fallback_when_the_first_setting_holds(rng, tiny_model):
    import warnings

    cube = _cube(rng)
    report: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = denoise(cube, model=tiny_model, report=report)
    assert report["fallback"] == [] and report["normalise"] == "clean"
    assert report["band_window"] is None and report["range"][0] < report["range"][1]
    np.testing.assert_array_equal(out, denoise(cube, model=tiny_model))


def test_clean_range_is_widened_when_the_first_pass_sees_beyond_it():
    ramp = np.linspace(100, 200, 40, dtype=np.float32)
    cube = np.broadcast_to(ramp[None, None, :], (6, 40, 40)).copy()
    cube[:, 20:22, 20:22] = 1000.0  # a bright 2 x 2 object: the median filter removes it
    spy = _Fragile()  # the identity: its output is its input
    report: dict = {}
    out = denoise(cube, model=spy, report=report)
    np.testing.assert_allclose(out, cube, rtol=1e-5)
    first_lo, first_hi = report["first_pass_range"]
    assert 100 <= first_lo < first_hi < 250  # the estimate missed the object ...
    lo, hi = report["range"]
    assert lo <= first_lo and hi > 990  # ... the first pass's output did not
    assert len(spy.calls) == 2 and spy.calls[1][1] <= 1.0 + 1e-6  # second pass in range
    # nothing beyond the estimate: one pass
    spy.calls.clear()
    denoise(np.broadcast_to(ramp, (6, 40, 40)).copy(), model=spy, report=report)
    assert len(spy.calls) == 1 and report["first_pass_range"] is None


def test_clean_normalisation_follows_the_units(rng, tiny_model):
    from ras2s import add_noise, metrics

    clean = rng.random((8, 1, 1)) * np.ones((8, 32, 32))  # flat bands: an easy clean range
    clean = ((clean - clean.min()) / (clean.max() - clean.min())).astype(np.float32)
    noisy = add_noise(clean, "mixture", rng=5).astype(np.float64)
    out = denoise(noisy, model=tiny_model)
    scaled = denoise(noisy * 5000 + 300, model=tiny_model)
    np.testing.assert_allclose((scaled - 300) / 5000, out, atol=1e-5)
    a = metrics.mpsnr(out.astype(np.float32), clean, data_range=1.0)
    b = metrics.mpsnr(((scaled - 300) / 5000).astype(np.float32), clean, data_range=1.0)
    assert abs(a - b) < 0.05


def test_normalisation_range_leaves_nodata_out(rng):
    from ras2s.inference import normalisation_range

    cube = (rng.random((6, 30, 30)) * 100 + 50).astype(np.float32)
    holed = cube.copy()
    holed[:, :5, :] = -9999.0
    for how in ("minmax", "percentile", "clean"):
        _, lo, hi = normalisation_range(holed, how, nodata=-9999.0)
        assert lo > 40 and hi < 160, (how, lo, hi)
    _, lo, _ = normalisation_range(holed, "minmax")  # told nothing: -9999 is data
    assert lo == -9999.0


# ------------------------------------------------------------------ band windows


def test_band_window_runs_the_network_on_windows_of_that_many_bands(rng, tiny_model):
    from ras2s.tiling import run_band_windows

    cube = _cube(rng, shape=(20, 16, 16))
    lo, hi = cube.min(), cube.max()

    def network(x):
        with torch.inference_mode():
            return tiny_model(torch.from_numpy(x)[None])[0].numpy()

    expected = run_band_windows(network, (cube - lo) / (hi - lo), 8, 2) * (hi - lo) + lo
    out = denoise(cube, model=tiny_model, band_window=8, normalise="minmax")
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    whole = denoise(cube, model=tiny_model, band_window=None, normalise="minmax")
    assert np.abs(out - whole).max() > 1e-3  # windows are not the whole sequence
    assert np.array_equal(
        denoise(cube, model=tiny_model, band_window=20, normalise="minmax"), whole
    )


def test_band_window_auto_follows_the_weights_card(rng, tiny_model, monkeypatch):
    from ras2s.inference import resolve_band_window

    cube = _cube(rng, shape=(40, 16, 16))
    monkeypatch.setattr(tiny_model, "card", {"inference": {"band_window": 12}}, raising=False)
    assert resolve_band_window("auto", tiny_model) == 12
    np.testing.assert_array_equal(
        denoise(cube, model=tiny_model), denoise(cube, model=tiny_model, band_window=12)
    )
    assert resolve_band_window(None, tiny_model) is None
    assert resolve_band_window(0, tiny_model) is None
    monkeypatch.setattr(tiny_model, "card", {}, raising=False)  # e.g. the authors' weights
    assert resolve_band_window("auto", tiny_model) is None
    for bad in (2, 1.5, "31", True):
        with pytest.raises(InputError, match="band_window"):
            resolve_band_window(bad, tiny_model)


def test_band_windows_let_the_memory_budget_take_larger_tiles():
    from ras2s.inference import plan_tiles

    shape = (189, 1024, 1024)
    whole, _ = plan_tiles(shape, np.float32, max_memory=2 << 30)
    windowed, _ = plan_tiles(shape, np.float32, max_memory=2 << 30, band_window=31)
    assert windowed[0] * windowed[1] > whole[0] * whole[1]
    assert network_bytes(189, 100, band_window=31) == network_bytes(31, 100) + 8 * 189 * 100
    assert network_bytes(20, 100, band_window=31) == network_bytes(20, 100)
