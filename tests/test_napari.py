"""The napari plugin: reader, writer, Denoise / Compare / Assess widgets, manifest.

Headless: Qt runs on the ``offscreen`` platform. napari's canvas still needs OpenGL,
which Qt's offscreen platform gets from an X server: ``$DISPLAY`` when set, else a
private ``Xvfb`` started for this module (Debian: ``apt-get install xvfb``; ``.ci/run``
installs it). Everything skips, saying why, without napari, Qt or pytest-qt (a plain
``pip install .``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import select
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:  # qtpy raises its own error (not ImportError) when no Qt binding is installed
    with warnings.catch_warnings():  # npe2's pydantic models warn about pydantic v3
        warnings.simplefilter("ignore", DeprecationWarning)
        import napari
        import npe2
        import pytestqt  # noqa: F401
        from napari.components import ViewerModel
        from qtpy.QtCore import QTimer

        npe2.PluginManager.instance().discover()  # imports the manifests' pydantic models
except Exception as err:  # pragma: no cover - depends on the install
    pytest.skip(
        f"the napari plugin tests need napari, a Qt binding and pytest-qt "
        f"(pip install 'ras2s[napari]'): {type(err).__name__}: {err}",
        allow_module_level=True,
    )

from ras2s import io as cube_io  # noqa: E402
from ras2s.inference import denoise  # noqa: E402
from ras2s.napari._denoise import (  # noqa: E402
    Cancelled,
    DenoiseWidget,
    Settings,
    _Job,
    grid_of,
    parse_band_window,
    parse_sigma,
)
from ras2s.napari._reader import get_reader  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),  # many small network runs on a shared machine
]


# --------------------------------------------------------------------------- display


@pytest.fixture(scope="session")
def gl_display():
    """An X display for OpenGL: ``$DISPLAY``, else a private Xvfb (skip when neither)."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip(
            "napari's canvas needs OpenGL through an X server: no $DISPLAY and no Xvfb "
            "(Debian: apt-get install xvfb)"
        )
    read, write = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    os.close(write)
    # Xvfb writes the display number and a newline once it accepts clients; the pipe
    # stays open until it exits (closing it early would kill Xvfb with SIGPIPE).
    text = b""
    deadline = time.monotonic() + 20
    while not text.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([read], [], [], 1)
        chunk = os.read(read, 32) if ready else b""
        if ready and not chunk:
            break
        text += chunk
    if not text.strip():
        proc.kill()
        os.close(read)
        pytest.skip("Xvfb did not start within 20 s")
    os.environ["DISPLAY"] = f":{text.decode().strip()}"
    yield os.environ["DISPLAY"]
    # Xvfb outlives the session: the QApplication holds its connection until the
    # interpreter exits, and a server gone before that makes Xlib exit(1) ("XIO: fatal
    # IO error"). It gets SIGTERM when this process ends (_die_with_parent).


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process exits (Linux)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


@pytest.fixture(scope="session")
def qapp_args(gl_display):
    """pytest-qt's QApplication arguments; asking for the display first orders them."""
    return []


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture(autouse=True)
def discovered():
    """The installed plugins registered with npe2 (a bare ViewerModel does not do it)."""
    import npe2

    npe2.PluginManager.instance().discover()


# --------------------------------------------------------------------------- cubes


def smooth_cube(bands=8, height=48, width=40, seed=0, dtype=np.float32):
    """A smooth scene plus noise, (bands, H, W), values in about [100, 900]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    lam = np.linspace(0, 1, bands)[:, None, None]
    clean = 500 + 300 * np.sin(x / 7 + 2 * lam) * np.cos(y / 9) + 100 * lam
    noisy = clean + 40 * rng.standard_normal(clean.shape)
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.rint(noisy), 0, None).astype(dtype)
    return noisy.astype(dtype)


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def add_cube(viewer, data=None, name="scene"):
    data = smooth_cube() if data is None else data
    return viewer.add_image(
        data,
        name=name,
        scale=(1.0, 2.0, 3.0),
        translate=(0.0, 10.0, -5.0),
        metadata={"source": "scene.npy", "wavelengths": [400.0 + 10 * i for i in range(len(data))]},
    )


def wait_worker(qtbot, widget, timeout=30_000):
    """Wait until ``widget``'s thread worker has finished."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def denoise_widget(viewer, weights, **fields):
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    widget.weights.value = "file..."
    widget.weights_file.value = str(weights)
    widget.compare.value = False
    for name, value in fields.items():
        getattr(widget, name).value = value
    return widget


# --------------------------------------------------------------------------- manifest


def test_npe2_validate_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    if not npe2.exists():
        pytest.skip("the npe2 command is not installed beside this Python")
    done = subprocess.run(
        [str(npe2), "validate", "--imports", "ras2s"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


# --------------------------------------------------------------------------- reader


def write_png_folder(path, cube):
    cube_io.write_cube(path, cube.astype(np.uint16))
    return path


FORMATS = ["mat", "npy", "npz", "h5", "tif", "hdr", "png"]


@pytest.mark.parametrize("fmt", FORMATS + (["zarr"] if ".zarr" in cube_io.FORMATS else []))
def test_reader_opens_every_format_bands_first(tmp_path, fmt):
    if fmt == "zarr":
        pytest.importorskip("zarr", reason="zarr is not installed (pip install 'ras2s[scale]')")
    # square: .npy, .npz and .h5 have no layout convention, the rule needs H == W
    cube = smooth_cube(bands=5, height=12, width=12, dtype=np.uint16)
    path = tmp_path / ("scene" if fmt == "png" else f"scene.{fmt}")
    cube_io.write_cube(path, cube)
    assert get_reader(str(path)) is not None
    model = ViewerModel()
    layers = model.open(path, plugin="ras2s")
    assert len(layers) == 1
    layer = layers[0]
    np.testing.assert_array_equal(layer.data, cube)  # (bands, H, W): bands on the slider
    assert layer.axis_labels == ("band", "y", "x")
    assert model.dims.nsteps[0] == 5
    assert layer.metadata["source"] == str(path)
    assert layer.metadata["format"] in (fmt, "tiff", "envi", "png", "h5")


def test_reader_declines_what_ras2s_does_not_read(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.csv")) is None
    assert get_reader(str(tmp_path / "empty")) is None


def test_reader_metadata_envi_wavelengths_georeference_nodata(tmp_path):
    from spectral.io import envi

    cube = smooth_cube(bands=4, height=10, width=9)
    meta = {
        "wavelength": ["450.5", "550", "650", "750"],
        "wavelength units": "Nanometers",
        "band names": ["b1", "b2", "b3", "b4"],
        "bbl": ["1", "1", "0", "1"],
        "map info": ["UTM", "1", "1", "500000", "4100000", "30", "30", "11", "North", "WGS-84"],
        "data ignore value": "-9999",
    }
    envi.save_image(
        str(tmp_path / "s.hdr"), cube.transpose(1, 2, 0), metadata=meta, ext=".img", force=True
    )
    (layer,) = ViewerModel().open(tmp_path / "s.hdr", plugin="ras2s")
    md = layer.metadata
    assert layer.name == "s"
    assert md["wavelengths"] == [450.5, 550.0, 650.0, 750.0]
    assert md["wavelength_units"] == "Nanometers"
    assert md["band_names"] == ["b1", "b2", "b3", "b4"]
    assert md["georeference"]["map info"][0] == "UTM"
    assert md["nodata"] == -9999.0
    assert md["bad_bands"] == [2]


def _write_geotiff(path):
    """A 3 x 10 x 8 float32 GeoTIFF (UTM 11N, 30 m, nodata -9999) written by GDAL.

    Returns rasterio, the cube written and its transform.
    """
    rasterio = pytest.importorskip("rasterio", reason="rasterio (GDAL) is not installed")
    from rasterio.transform import Affine

    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 10,
        "count": 3,
        "dtype": "float32",
        "crs": "EPSG:32611",
        "transform": Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0),
        "nodata": -9999.0,
    }
    cube = smooth_cube(bands=3, height=10, width=8)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(cube)
    return rasterio, cube, profile["transform"]


def test_reader_metadata_geotiff(tmp_path):
    _write_geotiff(tmp_path / "g.tif")
    (layer,) = ViewerModel().open(tmp_path / "g.tif", plugin="ras2s")
    geo = layer.metadata["georeference"]
    assert geo["ModelPixelScale"][:2] == (30.0, 30.0)
    assert "GeoKeyDirectory" in geo
    assert layer.metadata["nodata"] == -9999.0


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_reader_container_with_several_cubes_opens_each(tmp_path, fmt):
    import h5py

    a = smooth_cube(bands=4, height=6, width=6, seed=1)
    b = smooth_cube(bands=4, height=6, width=6, seed=2)
    if fmt == "npz":
        np.savez(tmp_path / "two.npz", first=a, second=b, label=np.arange(3))
    else:
        with h5py.File(tmp_path / "two.h5", "w") as f:
            f["first"], f["second"], f["label"] = a, b, np.arange(3)
    layers = ViewerModel().open(tmp_path / f"two.{fmt}", plugin="ras2s")
    assert sorted(layer.name for layer in layers) == ["two [first]", "two [second]"]
    got = {layer.metadata["key"]: layer.data for layer in layers}
    np.testing.assert_array_equal(got["first"], a)
    np.testing.assert_array_equal(got["second"], b)


def test_reader_error_is_one_line_notification(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    bad = tmp_path / "broken.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 40)
    layers = ViewerModel().open(bad, plugin="ras2s")
    assert layers == []
    assert len(shown) == 1
    assert "\n" not in shown[0] and "broken.mat" in shown[0] and "Traceback" not in shown[0]
    np.save(tmp_path / "odd.npy", np.zeros((5, 12, 10), np.float32))  # layout ambiguous
    assert ViewerModel().open(tmp_path / "odd.npy", plugin="ras2s") == []
    assert len(shown) == 2 and "layout='BHW'" in shown[1] and "\n" not in shown[1]


# --------------------------------------------------------------------------- writer


WRITTEN = [".tif", ".hdr", ".mat", ".npy", ".npz", ".h5"]


@pytest.mark.parametrize("ext", WRITTEN + ([".zarr"] if ".zarr" in cube_io.FORMATS else []))
def test_writer_round_trip(tmp_path, ext):
    if ext == ".zarr":
        pytest.importorskip("zarr", reason="zarr is not installed (pip install 'ras2s[scale]')")
    cube = smooth_cube(bands=4, height=10, width=10)
    source = tmp_path / f"in{ext}"
    cube_io.write_cube(source, cube)
    model = ViewerModel()
    (layer,) = model.open(source, plugin="ras2s")
    out = tmp_path / f"out{ext}"
    written = napari.save_layers(str(out), [layer], plugin="ras2s")
    assert [Path(p).name for p in written] == [out.name]
    back = cube_io.read_cube(out)
    np.testing.assert_array_equal(back.data, cube)
    assert back.data.dtype == cube.dtype


def test_writer_keeps_envi_metadata_and_georeference(tmp_path):
    from spectral.io import envi

    cube = smooth_cube(bands=3, height=8, width=7)
    meta = {
        "wavelength": ["500", "600", "700"],
        "map info": ["UTM", "1", "1", "500000", "4100000", "30", "30", "11", "North", "WGS-84"],
        "data ignore value": "-9999",
    }
    envi.save_image(
        str(tmp_path / "in.hdr"), cube.transpose(1, 2, 0), metadata=meta, ext=".img", force=True
    )
    (layer,) = ViewerModel().open(tmp_path / "in.hdr", plugin="ras2s")
    napari.save_layers(str(tmp_path / "out.hdr"), [layer], plugin="ras2s")
    back = cube_io.read_cube(tmp_path / "out.hdr")
    assert [float(w) for w in back.metadata["wavelength"]] == [500.0, 600.0, 700.0]
    assert back.metadata["map info"][:2] == ["UTM", "1"]
    assert cube_io.cube_nodata(back) == -9999.0


def test_writer_keeps_geotiff_tags(tmp_path):
    rasterio, cube, transform = _write_geotiff(tmp_path / "in.tif")
    (layer,) = ViewerModel().open(tmp_path / "in.tif", plugin="ras2s")
    napari.save_layers(str(tmp_path / "out.tif"), [layer], plugin="ras2s")
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.crs.to_epsg() == 32611
        assert ds.transform == transform
        assert ds.nodata == -9999.0
        np.testing.assert_array_equal(ds.read(), cube)


def test_writer_refusal_is_one_line(tmp_path, monkeypatch):
    from ras2s.napari._writer import write_image

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    assert write_image(str(tmp_path / "x.npy"), np.zeros((4, 5)), {"metadata": {}}) == []
    assert len(shown) == 1 and "\n" not in shown[0]
    assert not (tmp_path / "x.npy").exists()


# --------------------------------------------------------------------------- Denoise


def test_settings_parsing():
    assert parse_band_window("auto") == "auto"
    assert parse_band_window(" none ") is None
    assert parse_band_window("31") == 31
    with pytest.raises(ValueError, match="band window"):
        parse_band_window("1")
    assert parse_sigma("") is None
    assert parse_sigma("30") == 30.0
    with pytest.raises(ValueError, match="sigma"):
        parse_sigma("-3")


def test_denoise_widget_adds_a_layer_and_leaves_the_original(viewer, qtbot, tiny_weights):
    cube = smooth_cube()
    layer = add_cube(viewer, cube)
    before_meta = {k: (list(v) if isinstance(v, list) else v) for k, v in layer.metadata.items()}
    before = digest(layer.data)
    widget = denoise_widget(viewer, tiny_weights)
    assert widget.layer.value is layer
    worker = widget.run()
    assert worker is not None and not widget.run_button.enabled
    wait_worker(qtbot, widget)

    assert [x.name for x in viewer.layers] == ["scene", "scene denoised"]
    new = viewer.layers["scene denoised"]
    np.testing.assert_array_equal(new.data, denoise(cube, weights=tiny_weights))
    assert new.data.dtype == cube.dtype
    np.testing.assert_array_equal(new.scale, layer.scale)
    np.testing.assert_array_equal(new.translate, layer.translate)
    assert new.metadata["wavelengths"] == layer.metadata["wavelengths"]
    assert new.metadata["ras2s_denoise"]["from"] == "scene"
    # the original: same bytes, same metadata, same object in the viewer
    assert digest(layer.data) == before and layer.data is cube
    assert layer.metadata == before_meta
    assert widget.progress.value == widget.progress.max >= 1
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_denoise_keeps_the_event_loop_answering(viewer, qtbot, tiny_weights):
    layer = add_cube(viewer, smooth_cube(bands=8, height=160, width=160))  # one tile, > 0.2 s
    widget = denoise_widget(viewer, tiny_weights)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    try:
        start = time.perf_counter()
        widget.run()
        wait_worker(qtbot, widget, timeout=60_000)
        end = time.perf_counter()
    finally:
        timer.stop()
    during = [t for t in ticks if start <= t <= end]
    assert layer.name + " denoised" in viewer.layers
    assert end - start > 0.2, "the run was too short to tell"
    # the main thread served the 10 ms timer all along: no gap near the run's length
    gaps = np.diff([start, *during, end])
    assert len(during) >= 5, (len(during), end - start)
    assert gaps.max() < max(0.5, 0.5 * (end - start)), gaps.max()


def test_cancel_stops_the_work_and_adds_nothing(viewer, qtbot, tiny_weights):
    add_cube(viewer, smooth_cube(bands=8, height=256, width=256))
    widget = denoise_widget(viewer, tiny_weights, max_memory=32)  # MiB: 9 tiles
    names = [x.name for x in viewer.layers]
    widget.run()
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=30_000)
    widget.cancel_button.clicked.emit()  # what a click does
    at_cancel = widget.progress.value
    wait_worker(qtbot, widget)
    outcome = widget.last_outcome
    assert outcome.cancelled and outcome.data is None
    done, total = outcome.tiles
    assert total > 2 and done < total
    assert done <= at_cancel + 1  # stopped at the next tile (or inside the current one)
    assert [x.name for x in viewer.layers] == names
    assert "cancelled" in widget.status.value


def test_cancel_stops_inside_a_tile(qtbot, tiny_weights):
    """The network's hooks raise at the next layer once cancelled (one tile, big cubes)."""
    import torch

    widget = DenoiseWidget(ViewerModel())
    model = widget._model(Settings(weights=str(tiny_weights)))
    calls = []
    for module in model.modules():
        module.register_forward_pre_hook(lambda m, a: calls.append(m))
    widget._job = _Job(widget._relay)
    widget._job.cancel()
    with pytest.raises(Cancelled), torch.inference_mode():
        model(torch.rand(1, 8, 16, 16))
    assert len(calls) <= 3  # the model and a container or two: no convolution ran
    widget._job = None
    with torch.inference_mode():
        assert model(torch.rand(1, 8, 16, 16)).shape == (1, 8, 16, 16)


def test_denoise_error_is_one_line_and_adds_nothing(viewer, qtbot, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    add_cube(viewer)
    widget = denoise_widget(viewer, bad)
    widget.run()
    wait_worker(qtbot, widget)
    assert [x.name for x in viewer.layers] == ["scene"]
    assert len(shown) == 1 and "\n" not in shown[0] and "bad.pt" in shown[0]


def test_classical_method_from_the_drop_down(viewer, qtbot, tiny_weights):
    from ras2s.baselines import available

    if available()["wavelet"] is not None:
        pytest.skip(available()["wavelet"])
    cube = smooth_cube(bands=4, height=32, width=32)
    add_cube(viewer, cube)
    widget = denoise_widget(viewer, tiny_weights, method="wavelet", sigma="10")
    assert not widget.sigma.native.isHidden() and widget.weights.native.isHidden()
    widget.run()
    wait_worker(qtbot, widget)
    new = viewer.layers["scene denoised"]
    assert new.metadata["ras2s_denoise"]["method"] == "wavelet"
    assert np.std(np.diff(new.data, axis=-1)) < np.std(np.diff(cube, axis=-1))


# --------------------------------------------------------------------------- Compare


def test_open_denoise_compare_in_two_actions(viewer, qtbot, tmp_path, tiny_weights):
    """After opening the file: (1) Plugins > ras2s > Denoise, (2) click Denoise."""
    cube = smooth_cube(bands=6, height=40, width=36, dtype=np.uint16)
    cube_io.write_cube(tmp_path / "scene.tif", cube)
    viewer.open(tmp_path / "scene.tif", plugin="ras2s")
    _dock, widget = viewer.window.add_plugin_dock_widget("ras2s", "Denoise")  # action 1
    widget.weights.value = "file..."  # only to use the tiny test network
    widget.weights_file.value = str(tiny_weights)
    widget.run_button.clicked.emit()  # action 2
    wait_worker(qtbot, widget)

    noisy, den = viewer.layers["scene"], viewer.layers["scene denoised"]
    assert grid_of(viewer).enabled  # side by side
    compare = widget.compare_widget
    assert compare.noisy.value is noisy and compare.denoised.value is den
    # the centre pixel's spectra are already plotted, noisy against denoised
    spectra = compare.spectra()
    y, x = 20, 18
    np.testing.assert_array_equal(spectra["scene"], cube[:, y, x])
    np.testing.assert_array_equal(spectra["scene denoised"], den.data[:, y, x])
    assert len(compare.canvas.axes[0].lines) == 3  # two spectra and the current band
    # linked contrast limits, both ways
    noisy.contrast_limits = (100, 700)
    assert tuple(den.contrast_limits) == (100, 700)
    den.contrast_limits = (200, 600)
    assert tuple(noisy.contrast_limits) == (200, 600)


def test_click_plots_the_spectrum_and_residual_layer(viewer, qtbot):
    from ras2s.napari._compare import CompareWidget

    noisy = add_cube(viewer, smooth_cube(), name="n")
    smooth = add_cube(viewer, smooth_cube(seed=5) * 0.5, name="d")
    compare = CompareWidget(viewer)
    viewer.window.add_dock_widget(compare)
    compare.set_pair(noisy, smooth)
    # a click at world (band 0, y 9 * 2 + 10, x 7 * 3 - 5): data pixel (9, 7)
    event = SimpleNamespace(type="mouse_press", position=(0.0, 28.0, 16.0))
    for callback in viewer.mouse_drag_callbacks:
        callback(viewer, event)
    assert compare.pixel == (9, 7)
    np.testing.assert_array_equal(compare.spectra()["n"], noisy.data[:, 9, 7])
    xs = compare.canvas.axes[0].lines[0].get_xdata()
    assert list(xs) == noisy.metadata["wavelengths"]  # plotted against wavelength
    resid = compare.add_residual()
    assert resid.name == "n residual"
    np.testing.assert_allclose(resid.data, noisy.data - smooth.data, rtol=0, atol=1e-4)
    assert resid.contrast_limits[0] == -resid.contrast_limits[1]
    np.testing.assert_array_equal(resid.scale, noisy.scale)


# --------------------------------------------------------------------------- Assess


def test_assess_widget_plots_sigma_and_stripes(viewer, qtbot):
    from ras2s.napari._assess import AssessWidget

    cube = smooth_cube(bands=6, height=64, width=64)  # the smooth scene + sigma 40
    noisy = add_cube(viewer, cube, name="n")
    y, x = np.mgrid[0:64, 0:64]  # the same scene without the noise
    lam = np.linspace(0, 1, 6)[:, None, None]
    clean = (500 + 300 * np.sin(x / 7 + 2 * lam) * np.cos(y / 9) + 100 * lam).astype(np.float32)
    den = add_cube(viewer, clean, name="d")
    den.metadata["ras2s_denoise"] = {"from": "n"}
    widget = AssessWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.noisy.value, widget.denoised.value = noisy, den
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert len(widget.rows) == 12
    summary = widget.result["cubes"]
    assert 35 < summary["noisy"]["median_sigma"] < 45  # 40 added
    assert summary["denoised"]["sigma_ratio"] < 0.1
    sigma_ax, stripe_ax = widget.canvas.axes
    assert len(sigma_ax.lines) == 2 and len(stripe_ax.lines) == 2
    assert list(sigma_ax.lines[0].get_xdata()) == noisy.metadata["wavelengths"]
    assert "sigma ratio" in widget.summary.value


# --------------------------------------------------------------------------- screenshots


def test_screenshots_are_made_offscreen(viewer, qtbot, tmp_path, tiny_weights):
    spec = importlib.util.spec_from_file_location(
        "napari_screenshots", ROOT / "benchmarks" / "napari_screenshots.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cube = smooth_cube(bands=8, height=64, width=64)
    paths = module.make_screenshots(viewer, cube, tmp_path, weights=str(tiny_weights), qtbot=qtbot)
    from PIL import Image

    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 10  # not a blank frame


def test_closed_widgets_leave_the_viewer_alone(viewer, qtbot):
    from qtpy.QtCore import QCoreApplication, QEvent

    from ras2s.napari._assess import AssessWidget
    from ras2s.napari._compare import CompareWidget

    events = viewer.layers.events
    before = [len(getattr(events, e).callbacks) for e in ("inserted", "removed", "moved")]
    clicks = len(viewer.mouse_drag_callbacks)
    for widget in (DenoiseWidget(viewer), CompareWidget(viewer), AssessWidget(viewer)):
        widget.native.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    after = [len(getattr(events, e).callbacks) for e in ("inserted", "removed", "moved")]
    assert after == before and len(viewer.mouse_drag_callbacks) == clicks
    add_cube(viewer)  # no callback into a deleted widget
