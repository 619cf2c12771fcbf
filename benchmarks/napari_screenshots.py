"""Screenshots of the napari plugin for docs/napari.md, made without a screen.

    .venv/bin/python benchmarks/napari_screenshots.py

Without ``$DISPLAY`` it starts a private Xvfb (Debian: ``apt-get install xvfb
libxcb-icccm4 libxcb-keysyms1``, the two libraries Qt's xcb platform needs beyond a
base system) and draws with Qt's ``xcb`` platform there: Qt's ``offscreen`` platform,
which the tests use, has no OpenGL widget, so napari's canvas would stay black.

It opens a 31-band scene (the CAVE cloth cube of ``../shared/data``, 31 x 256 x 256,
with non-i.i.d. Gaussian noise added, seed 0; a synthetic scene when the shared data is
absent), denoises it with the Denoise widget and the default weights, clicks a pixel,
assesses both layers, and writes

- ``docs/img/napari_denoise.png``: the window after Denoise (side by side, Compare dock);
- ``docs/img/napari_assess.png``: the Assess dock's sigma and stripe plots.

``tests/test_napari.py`` runs :func:`make_screenshots` on a small cube with a tiny
network, so the code that makes the pictures is tested on every CI run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLOTH = ROOT.parent / "shared" / "data" / "CAVE_cloth"


def _wait(widget, qtbot=None, timeout=600.0):
    """Wait for the widget's thread worker, serving Qt events meanwhile."""
    if qtbot is not None:
        qtbot.waitUntil(lambda: widget.worker is None, timeout=int(timeout * 1000))
        return
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while widget.worker is not None:
        if time.monotonic() > end:
            raise TimeoutError("the worker did not finish")
        QApplication.processEvents()
        time.sleep(0.01)


def _settle(qtbot=None, ms=300):
    from qtpy.QtWidgets import QApplication

    if qtbot is not None:
        qtbot.wait(ms)
        return
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def make_screenshots(viewer, cube, out_dir, *, weights="default", qtbot=None, name="cloth"):
    """Denoise, compare and assess ``cube`` in ``viewer``; write two PNGs, return paths."""
    from PIL import Image
    from qtpy.QtCore import Qt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    window = viewer.window._qt_window
    window.resize(1500, 900)
    window.show()
    bands = cube.shape[0]
    viewer.add_image(
        cube,
        name=name,
        metadata={"wavelengths": list(np.linspace(400, 700, bands)), "wavelength_units": "nm"},
        colormap="gray",
    )
    viewer.dims.set_current_step(0, bands // 2)
    _dock, denoise = viewer.window.add_plugin_dock_widget("ras2s", "Denoise")
    if weights != "default":
        denoise.weights.value = "file..."
        denoise.weights_file.value = str(weights)
    denoise.run()
    _wait(denoise, qtbot)
    compare = denoise.compare_widget
    compare_dock = viewer.window.dock_widgets["Compare (ras2s)"].native.parent()
    window.resizeDocks([_dock, compare_dock], [420, 420], Qt.Orientation.Horizontal)
    noisy = viewer.layers[name]
    y, x = cube.shape[1] // 3, cube.shape[2] // 3
    event = SimpleNamespace(type="mouse_press", position=(bands // 2, y, x))
    compare._on_click(viewer, event)
    _settle(qtbot)  # the docks take their new widths first
    viewer.reset_view()
    _settle(qtbot)
    first = out_dir / "napari_denoise.png"
    Image.fromarray(window_screenshot(viewer)).save(first)

    viewer.window.remove_dock_widget(_dock)
    viewer.window.remove_dock_widget(compare_dock)
    assess_dock, assess = viewer.window.add_plugin_dock_widget("ras2s", "Assess")
    window.resizeDocks([assess_dock], [520], Qt.Orientation.Horizontal)
    assess.noisy.value = noisy
    assess.denoised.value = viewer.layers[f"{name} denoised"]
    assess.run()
    _wait(assess, qtbot)
    _settle(qtbot)
    viewer.reset_view()
    _settle(qtbot)
    second = out_dir / "napari_assess.png"
    Image.fromarray(window_screenshot(viewer)).save(second)
    return [first, second]


def window_screenshot(viewer) -> np.ndarray:
    """The whole window, RGB, with the canvas rendered by vispy pasted in.

    Offscreen, grabbing the window leaves the OpenGL canvas black; the canvas is drawn
    on its own (``viewer.screenshot(canvas_only=True)``) and put in its place.
    """
    from qtpy.QtCore import QPoint
    from qtpy.QtGui import QImage

    window = viewer.window._qt_window
    grab = window.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = grab.width(), grab.height()
    ptr = grab.constBits()
    ptr.setsize(grab.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(height, grab.bytesPerLine())
    image = rows[:, : width * 3].reshape(height, width, 3).copy()
    native = viewer.window._qt_viewer.canvas.native
    corner = native.mapTo(window, QPoint(0, 0))
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    h = min(canvas.shape[0], height - corner.y())
    w = min(canvas.shape[1], width - corner.x())
    image[corner.y() : corner.y() + h, corner.x() : corner.x() + w] = canvas[:h, :w]
    return image


def scene() -> np.ndarray:
    """The CAVE cloth cube with non-i.i.d. Gaussian noise, or a synthetic scene."""
    import ras2s

    files = sorted(CLOTH.glob("*.mat")) if CLOTH.is_dir() else []
    if files:
        clean = ras2s.read_cube(files[0]).data.astype(np.float64)
        top, left = (clean.shape[1] - 256) // 2, (clean.shape[2] - 256) // 2
        clean = clean[:31, top : top + 256, left : left + 256]
        clean = (clean - clean.min()) / (clean.max() - clean.min())
    else:
        y, x = np.mgrid[0:256, 0:256] / 256
        lam = np.linspace(0, 1, 31)[:, None, None]
        clean = 0.5 + 0.3 * np.sin(12 * x + 3 * lam) * np.cos(9 * y) + 0.1 * lam
    return ras2s.add_noise(clean.astype(np.float32), "noniid", rng=0).astype(np.float32)


def ensure_display() -> str:
    """``$DISPLAY``, or a private Xvfb's display (it ends with this process)."""
    import select
    import shutil
    import subprocess

    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise SystemExit("no $DISPLAY and no Xvfb: apt-get install xvfb (or run in a desktop)")

    def die_with_parent() -> None:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    read, write = os.pipe()
    subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    os.close(write)
    text = b""
    while not text.endswith(b"\n"):
        ready, _, _ = select.select([read], [], [], 20)
        chunk = os.read(read, 32) if ready else b""
        if not chunk:
            raise SystemExit("Xvfb did not start")
        text += chunk
    os.environ["DISPLAY"] = f":{text.decode().strip()}"
    return os.environ["DISPLAY"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--weights", default="default")
    args = parser.parse_args(argv)
    ensure_display()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    import napari

    viewer = napari.Viewer(show=False)
    paths = make_screenshots(viewer, scene(), args.out, weights=args.weights)
    for path in paths:
        print(f"{path}  {path.stat().st_size:,} bytes")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
