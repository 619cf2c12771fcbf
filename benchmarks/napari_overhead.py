"""What the napari Denoise widget costs over ``ras2s.denoise`` on the same cube.

    .venv/bin/python benchmarks/napari_overhead.py [--repeats 3] [--cube PATH]

The cube: the CAVE cloth scene of ``../shared/data`` (31 x 256 x 256) with non-i.i.d.
Gaussian noise (seed 0), or a synthetic scene of that size when the data is absent.
First both load the weights once (``ras2s.denoise(cube, weights="default")`` and the
widget's first Run). Then, alternating, ``--repeats`` times each:

- **api**: ``ras2s.denoise(cube, model=model)`` (the weights loaded once);
- **widget**: the Denoise widget's Run in a napari viewer with its defaults (default
  weights, compare side by side on), timed from the click until the new layer is in the
  viewer and the Compare dock has drawn (the widget keeps its loaded network).

Wall and process CPU seconds, min and median: on a shared machine other processes
stretch single runs, so the minimum and the CPU time are the steadier figures. The
widget's own cost is also measured within each run: its time outside ``ras2s.denoise``
(thread start, the new layers, the grid view and the Compare dock). While the widget
runs, a 50 ms QTimer measures the longest gap between ticks (the time the event loop
could not answer). Prints the figures, the ratios and the machine. Qt runs on the
``offscreen`` platform, with a private Xvfb when there is no ``$DISPLAY`` (as the tests).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from napari_screenshots import ensure_display, scene  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_widget(viewer, widget, cube):
    """One Run of ``widget`` on a fresh layer, until its layer is in the viewer.

    Returns wall seconds, process CPU seconds, the seconds the worker spent in
    ``ras2s.denoise`` (``inner``), and the longest gaps between 50 ms timer ticks while
    the network ran and over the whole run.
    """
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from ras2s.napari._denoise import grid_of

    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    grid_of(viewer).enabled = False
    layer = viewer.add_image(cube, name="cube")
    widget.reset_choices()
    widget.layer.value = layer
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    start, cpu = time.perf_counter(), time.process_time()
    timer.start(50)
    worker = widget.run()
    worker.finished.connect(loop.quit)
    loop.exec()
    QApplication.processEvents()  # what the result queued: the canvas, the spectrum plot
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    timer.stop()
    assert "cube denoised" in viewer.layers, widget.status.value
    inner = widget.last_outcome.seconds
    during = [t for t in ticks if t <= start + inner]
    gap_network = float(np.diff([start, *during, start + inner]).max())
    gap_all = float(np.diff([start, *ticks, start + seconds]).max())
    return seconds, cpu, inner, gap_network, gap_all


def timed(fn):
    """(wall seconds, process CPU seconds) of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cube", type=Path, help="a cube file (default: CAVE cloth + noise)")
    args = parser.parse_args(argv)
    ensure_display()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import napari
    import torch

    import ras2s

    cube = ras2s.read_cube(args.cube).data if args.cube else scene()
    print(f"cube {cube.shape} {cube.dtype}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, no GPU used, torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads; load average at "
        f"start {tuple(round(x, 2) for x in os.getloadavg())}"
    )
    viewer = napari.Viewer(show=False)
    _dock, widget = viewer.window.add_plugin_dock_widget("ras2s", "Denoise")
    model = ras2s.load_model("default")
    rows: dict[str, list] = {"api_first": [], "api": [], "widget": []}
    first = None
    for i in range(args.repeats + 1):
        if i == 0:  # both load the weights: ras2s.denoise(weights=) and the widget's first run
            rows["api_first"].append(timed(lambda: ras2s.denoise(cube, weights="default")))
            first = run_widget(viewer, widget, cube)
            print(
                f"  loading the weights: api {rows['api_first'][0][0]:.2f} s, widget's "
                f"first run {first[0]:.2f} s",
                flush=True,
            )
            continue
        api = timed(lambda: ras2s.denoise(cube, model=model))
        run = run_widget(viewer, widget, cube)
        rows["api"].append(api)
        rows["widget"].append(run)
        print(
            f"  round {i}: api {api[0]:.2f} s (CPU {api[1]:.2f} s); widget {run[0]:.2f} s "
            f"(CPU {run[1]:.2f} s; in ras2s.denoise {run[2]:.2f} s, outside "
            f"{run[0] - run[2]:.3f} s); longest event-loop gap {run[3] * 1000:.0f} ms "
            f"while the network ran, {run[4] * 1000:.0f} ms overall",
            flush=True,
        )
    api_wall = [r[0] for r in rows["api"]]
    api_cpu = [r[1] for r in rows["api"]]
    w_wall = [r[0] for r in rows["widget"]]
    w_cpu = [r[1] for r in rows["widget"]]
    outside = [r[0] - r[2] for r in rows["widget"]]
    print(
        f"ras2s.denoise(model=loaded): min {min(api_wall):.2f} s, median "
        f"{statistics.median(api_wall):.2f} s; CPU min {min(api_cpu):.2f} s"
    )
    print(
        f"widget Run:                  min {min(w_wall):.2f} s, median "
        f"{statistics.median(w_wall):.2f} s; CPU min {min(w_cpu):.2f} s"
    )
    print(
        f"ratio widget / api, wall: min/min {min(w_wall) / min(api_wall):.3f}, median/median "
        f"{statistics.median(w_wall) / statistics.median(api_wall):.3f}"
    )
    print(
        f"ratio widget / api, CPU:  min/min {min(w_cpu) / min(api_cpu):.3f}, median/median "
        f"{statistics.median(w_cpu) / statistics.median(api_cpu):.3f}"
    )
    print(
        f"widget time outside ras2s.denoise (thread start, layers, compare dock): median "
        f"{statistics.median(outside):.3f} s = "
        f"{statistics.median(outside) / statistics.median(w_wall) * 100:.1f} % of the run"
    )
    print(
        f"longest event-loop gap while the network ran: "
        f"{max(r[3] for r in rows['widget']) * 1000:.0f} ms; overall "
        f"{max(r[4] for r in rows['widget']) * 1000:.0f} ms"
    )
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
