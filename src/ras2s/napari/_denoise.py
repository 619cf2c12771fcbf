"""The Denoise dock widget: :func:`ras2s.denoise` (or a classical baseline) on a layer.

The work runs in a napari thread worker, so the viewer keeps answering. A progress bar
follows the tiles (:func:`ras2s.denoise`'s ``on_tile``), and Cancel stops the network
within one layer of it: the worker's tile callback and a forward pre-hook on every leaf
module of the network check the cancel flag and raise :class:`Cancelled`, which unwinds
:func:`ras2s.denoise` (nothing is added). A classical method cannot be interrupted; its
result is thrown away when Cancel was pressed during it.

The result is a new layer ``<name> denoised`` with the source layer's scale, translate,
rotation, units and metadata (plus an ``ras2s_denoise`` entry saying how it was made);
the source layer is never modified. With "compare" on, the viewer shows both side by
side (grid mode), their contrast limits linked, and the Compare dock plots spectra.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QObject, Signal, Slot

from ras2s.errors import Ras2sError

from ._layers import (
    DENOISE_KEY,
    LAYER_EVENTS,
    cube_layers,
    disconnect_layer_events,
    layer_like,
    residual,
    symmetric_limits,
)

if TYPE_CHECKING:
    import napari

__all__ = ["Cancelled", "DenoiseWidget", "Settings", "parse_band_window", "parse_sigma"]

MiB = 2**20
#: ``ras2s.denoise``'s default memory budget (the widget does not import torch to ask).
DEFAULT_MAX_MEMORY_MIB = 2048
WEIGHTS_FILE = "file..."


class Cancelled(Exception):
    """Raised in the worker thread once Cancel was pressed: it unwinds the run."""


@dataclass(frozen=True)
class Settings:
    """What one run does (the widget's fields, checked)."""

    method: str = "ras2s"
    weights: str = "default"
    precision: str = "auto"
    band_window: int | str | None = "auto"
    max_memory: int = DEFAULT_MAX_MEMORY_MIB * MiB
    device: str = "cpu"
    sigma: float | None = None  # classical methods, on the 0-255 scale; None: estimated


@dataclass
class Outcome:
    """What a run gives back to the main thread."""

    data: np.ndarray | None = None
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False
    error: str | None = None
    tiles: tuple[int, int] = (0, 0)


def parse_band_window(text: str) -> int | str | None:
    """``"auto"``, ``None`` (``"none"``, ``"0"``, empty: the whole cube) or bands >= 2."""
    value = str(text).strip().lower()
    if value == "auto":
        return "auto"
    if value in ("", "none", "0", "whole"):
        return None
    try:
        bands = int(value)
    except ValueError:
        bands = -1
    if bands < 2:
        raise ValueError(
            f"band window: 'auto', 'none' or a number of bands >= 2, not {str(text)!r}"
        )
    return bands


def parse_sigma(text: str) -> float | None:
    """Noise sigma on the paper's 0-255 scale (``"30"``), or None (empty: estimated)."""
    value = str(text).strip()
    if not value or value.lower() in ("auto", "estimate"):
        return None
    try:
        sigma = float(value)
    except ValueError:
        sigma = -1.0
    if not (sigma > 0 and np.isfinite(sigma)):
        raise ValueError(f"sigma: a positive number on the 0-255 scale or empty, not {value!r}")
    return sigma


class _Relay(QObject):
    """Carries tile progress from the worker thread to the widget (a queued signal)."""

    tile = Signal(int, int)

    def __init__(self, callback: Any) -> None:
        super().__init__()
        self._callback = callback
        self.tile.connect(self._deliver)

    @Slot(int, int)
    def _deliver(self, done: int, total: int) -> None:
        self._callback(done, total)


class _Job:
    """One run: its cancel flag, checked by the tile callback and the network hooks."""

    def __init__(self, relay: _Relay) -> None:
        self._cancel = threading.Event()
        self._relay = relay
        self.tiles = (0, 0)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled

    def on_tile(self, done: int, total: int) -> None:
        self.check()
        self.tiles = (done, total)
        self._relay.tile.emit(done, total)


class DenoiseWidget(Container):
    """Denoise a cube layer with RAS2S or a classical baseline, in a thread worker."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.layer = ComboBox(label="layer", choices=self._choices, nullable=True)
        self.method = ComboBox(label="method", choices=_methods(), value="ras2s")
        self.weights = ComboBox(
            label="weights", choices=["default", "official", WEIGHTS_FILE], value="default"
        )
        self.weights_file = FileEdit(label="weights file", mode="r", filter="*.pt *.pth")
        self.precision = ComboBox(label="precision", choices=["auto", "fp32", "bf16"])
        self.band_window = LineEdit(label="band window", value="auto")
        self.max_memory = SpinBox(
            label="max memory (MiB)", value=DEFAULT_MAX_MEMORY_MIB, min=32, max=2**22, step=256
        )
        self.device = ComboBox(label="device", choices=["cpu", "auto"], value="cpu")
        self.sigma = LineEdit(label="sigma (0-255)", value="")
        self.residual = CheckBox(text="also add the residual layer", value=False)
        self.compare = CheckBox(text="compare side by side when done", value=True)
        self.run_button = PushButton(text="Denoise")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="tiles", value=0, min=0, max=1)
        self.status = Label(value="")
        self.extend(
            [
                self.layer,
                self.method,
                self.weights,
                self.weights_file,
                self.precision,
                self.band_window,
                self.max_memory,
                self.device,
                self.sigma,
                self.residual,
                self.compare,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ]
        )
        self.band_window.tooltip = "'auto' (the weights' card), 'none' (whole cube) or N bands"
        self.sigma.tooltip = "classical methods: noise sigma on the 0-255 scale; empty: estimated"
        self.weights_file.tooltip = "a ras2s checkpoint (.pt) or the authors' (.pth)"
        self.worker: Any = None
        self.last_outcome: Outcome | None = None
        self.last_layers: list[Any] = []
        self._job: _Job | None = None
        self._models: dict[tuple[str, str, str], Any] = {}
        self._relay = _Relay(self._on_tile)
        self._pass = 0

        self.method.changed.connect(self._show_fields)
        self.weights.changed.connect(self._show_fields)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        for event in LAYER_EVENTS:
            getattr(viewer.layers.events, event).connect(self._layers_changed)
        gone = partial(disconnect_layer_events, viewer, self._layers_changed)
        self.native.destroyed.connect(gone)
        self._layers_changed()
        self._show_fields()

    # ---------------------------------------------------------------- fields

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in cube_layers(self._viewer)]

    def _layers_changed(self, _event: Any = None) -> None:
        self.reset_choices()
        active = self._viewer.layers.selection.active
        if self.layer.value is None and active in [c[1] for c in self._choices()]:
            self.layer.value = active

    def _show_fields(self, _value: Any = None) -> None:
        network = self.method.value == "ras2s"
        for widget in (self.weights, self.precision, self.band_window, self.max_memory):
            widget.visible = network
        self.device.visible = network
        self.weights_file.visible = network and self.weights.value == WEIGHTS_FILE
        self.sigma.visible = not network

    def settings(self) -> Settings:
        """The fields as :class:`Settings`; ValueError with a one-line reason."""
        weights = self.weights.value
        if weights == WEIGHTS_FILE:
            path = self.weights_file.value
            if not str(path) or str(path) == "." or not path.is_file():
                raise ValueError(f"weights file: choose a checkpoint file (got {str(path)!r})")
            weights = str(path)
        return Settings(
            method=self.method.value,
            weights=weights,
            precision=self.precision.value,
            band_window=parse_band_window(self.band_window.value),
            max_memory=int(self.max_memory.value) * MiB,
            device=self.device.value,
            sigma=parse_sigma(self.sigma.value) if self.method.value != "ras2s" else None,
        )

    # ---------------------------------------------------------------- run

    def run(self, _value: Any = None) -> Any:
        """Start denoising the chosen layer; the thread worker, or None when refused."""
        if self.worker is not None:
            return None
        layer = self.layer.value
        if layer is None:
            self._say("choose a 3-D image layer (bands, H, W) to denoise", error=True)
            return None
        try:
            settings = self.settings()
        except ValueError as err:
            self._say(str(err), error=True)
            return None
        from napari.qt.threading import create_worker

        job = _Job(self._relay)
        meta = dict(layer.metadata)
        worker = create_worker(self._work, layer.data, settings, job, meta, _start_thread=False)
        worker.returned.connect(partial(self._finish, layer, settings))
        worker.finished.connect(self._idle)
        self.worker, self._job, self._pass = worker, job, 0
        self._running(True)
        self.progress.max, self.progress.value = 1, 0
        self._say(f"denoising {layer.name} ({settings.method})...")
        worker.start()
        return worker

    def cancel(self, _value: Any = None) -> None:
        """Stop the run in progress (nothing is added)."""
        if self._job is not None:
            self._job.cancel()
            self._say("cancelling...")

    def _running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def _idle(self) -> None:
        self.worker, self._job = None, None
        self._running(False)

    def _on_tile(self, done: int, total: int) -> None:
        if done == 0:
            self._pass += 1
        self.progress.max = max(total, 1)
        self.progress.value = min(done, total)
        again = f" (pass {self._pass})" if self._pass > 1 else ""
        if self._job is not None and not self._job.cancelled:
            self._say(f"tile {done} of {total}{again}")

    # ---------------------------------------------------------------- worker thread

    def _model(self, settings: Settings) -> Any:
        """The network for ``settings``, loaded once per widget, with cancel hooks."""
        key = (settings.weights, settings.precision, settings.device)
        if key not in self._models:
            from ras2s.inference import resolve_device
            from ras2s.weights import load_model

            device = resolve_device(settings.device)
            model = load_model(settings.weights, device, precision=settings.precision)
            for module in model.modules():
                if next(module.children(), None) is None:
                    module.register_forward_pre_hook(self._check_hook)
            self._models[key] = model
        return self._models[key]

    def _check_hook(self, _module: Any, _inputs: Any) -> None:
        job = self._job
        if job is not None:
            job.check()

    def _work(self, data: Any, settings: Settings, job: _Job, metadata: dict[str, Any]) -> Outcome:
        """Runs in the worker thread: denoise ``data``; never raises for expected failures."""
        start = time.perf_counter()
        report: dict[str, Any] = {}
        try:
            job.check()
            cube = np.asarray(data)
            if settings.method == "ras2s":
                from ras2s.inference import denoise

                model = self._model(settings)
                bad = list(metadata.get("bad_bands") or []) or None
                out = denoise(
                    cube,
                    model=model,
                    max_memory=settings.max_memory,
                    device=settings.device,
                    band_window=settings.band_window,
                    nodata=metadata.get("nodata"),
                    skip_bands=bad,
                    report=report,
                    on_tile=job.on_tile,
                )
            else:
                from ras2s.inference import denoise_classical

                sigma = None if settings.sigma is None else settings.sigma / 255
                out = denoise_classical(cube, settings.method, sigma=sigma)
                report = {"sigma_255": settings.sigma}
            job.check()
        except Cancelled:
            return Outcome(cancelled=True, seconds=time.perf_counter() - start, tiles=job.tiles)
        except Ras2sError as err:
            return Outcome(error=str(err).splitlines()[0], seconds=time.perf_counter() - start)
        except MemoryError:
            return Outcome(error="out of memory: lower 'max memory' or denoise a crop")
        return Outcome(out, report, time.perf_counter() - start, tiles=job.tiles)

    # ---------------------------------------------------------------- results

    def _finish(self, layer: Any, settings: Settings, outcome: Outcome) -> None:
        self.last_outcome = outcome
        self.last_layers = []
        if outcome.cancelled:
            done, total = outcome.tiles
            self._say(f"cancelled after {done} of {total} tiles; nothing was added")
            return
        if outcome.error is not None:
            self._say(outcome.error, error=True)
            return
        info = {
            "from": layer.name,
            "method": settings.method,
            "weights": settings.weights if settings.method == "ras2s" else None,
            "precision": settings.precision if settings.method == "ras2s" else None,
            "seconds": round(outcome.seconds, 3),
            "report": _jsonable(outcome.report),
        }
        denoised = layer_like(
            layer,
            outcome.data,
            name=f"{layer.name} denoised",
            metadata={**layer.metadata, DENOISE_KEY: info},
            contrast_limits=tuple(layer.contrast_limits),
        )
        self._viewer.layers.append(denoised)
        self.last_layers.append(denoised)
        if self.residual.value:
            data = residual(layer.data, outcome.data)
            resid = layer_like(
                layer,
                data,
                name=f"{layer.name} residual",
                metadata={**layer.metadata, "residual_of": [layer.name, denoised.name]},
                colormap="RdBu_r",
                contrast_limits=symmetric_limits(data),
                gamma=1.0,
            )
            self._viewer.layers.append(resid)
            self.last_layers.append(resid)
        if self.compare.value:
            self._show_comparison(layer, denoised)
        self.progress.value = self.progress.max
        self._say(f"done in {outcome.seconds:.1f} s")

    def _show_comparison(self, noisy: Any, denoised: Any) -> None:
        """Side by side (grid mode), contrast linked, spectra in the Compare dock."""
        grid_of(self._viewer).enabled = True
        window = getattr(self._viewer, "window", None)
        if window is None:
            return
        compare = None
        try:
            _dock, compare = window.add_plugin_dock_widget("ras2s", "Compare")
        except Exception:  # the plugin is not registered (used without npe2)
            from ._compare import CompareWidget

            compare = CompareWidget(self._viewer)
            window.add_dock_widget(compare, name="Compare (ras2s)", area="right")
        compare.set_pair(noisy, denoised)
        self.compare_widget = compare

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status.value = text
        if error:
            from napari.utils.notifications import show_error

            show_error(text)


def grid_of(viewer: Any) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if hasattr(canvas, "grid") else viewer.grid


def _methods() -> list[str]:
    """``ras2s`` and the classical baselines that can run here."""
    from ras2s.baselines import available

    return ["ras2s", *[name for name, why in available().items() if why is None]]


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and tuples made plain (layer metadata gets saved)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
