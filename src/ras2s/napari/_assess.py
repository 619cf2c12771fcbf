"""The Assess dock widget: no-reference figures of a noisy layer and its denoised version.

Per band, from :mod:`ras2s.assess` (the numbers of ``ras2s assess``): the noise sigma
(wavelet MAD) before and after, and the stripe index, plotted against wavelength when
the layer has wavelengths; below, the medians, the sigma ratio and the residual's
correlation with the image. The figures are computed in a thread worker.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton

from ras2s.errors import Ras2sError

from ._layers import DENOISE_KEY, LAYER_EVENTS, cube_layers, disconnect_layer_events
from ._plot import band_axis, legend, plot_canvas, style

if TYPE_CHECKING:
    import napari

__all__ = ["AssessWidget", "assess_layers"]


def assess_layers(
    noisy: np.ndarray, denoised: np.ndarray | None, metadata: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`ras2s.assess.band_table` and :func:`~ras2s.assess.summarise` of two cubes."""
    from ras2s import assess

    wavelengths = metadata.get("wavelengths")
    if wavelengths is not None and len(wavelengths) != np.shape(noisy)[0]:
        wavelengths = None
    others = {"denoised": np.asarray(denoised)} if denoised is not None else None
    kwargs = {"wavelengths": wavelengths, "nodata": metadata.get("nodata")}
    rows = assess.band_table(np.asarray(noisy), others, **kwargs)
    return rows, assess.summarise(np.asarray(noisy), others, rows=rows, **kwargs)


class AssessWidget(Container):
    """Per-band noise sigma and stripe index of a layer, before and after denoising."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.noisy = ComboBox(label="noisy", choices=self._choices, nullable=True)
        self.denoised = ComboBox(label="denoised", choices=self._choices, nullable=True)
        self.assess_button = PushButton(text="Assess")
        self.summary = Label(value="")
        self.extend([self.noisy, self.denoised, self.assess_button])
        self.native.layout().addWidget(self.summary.native)  # full width, several lines
        self.canvas = plot_canvas(2, height=2.4)
        self.native.layout().addWidget(self.canvas)
        self.worker: Any = None
        self.rows: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self.assess_button.changed.connect(self.run)
        for event in LAYER_EVENTS:
            getattr(viewer.layers.events, event).connect(self._layers_changed)
        gone = partial(disconnect_layer_events, viewer, self._layers_changed)
        self.native.destroyed.connect(gone)
        self._layers_changed()

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in cube_layers(self._viewer)]

    def _layers_changed(self, _event: Any = None) -> None:
        self.reset_choices()
        layers = {layer.name: layer for layer in cube_layers(self._viewer)}
        for layer in reversed(list(layers.values())):
            source = layer.metadata.get(DENOISE_KEY, {}).get("from")
            if source in layers and self.denoised.value is None:
                self.noisy.value, self.denoised.value = layers[source], layer
                return
        if self.noisy.value is None and layers:
            self.noisy.value = next(iter(layers.values()))

    def run(self, _value: Any = None) -> Any:
        """Compute the figures in a thread worker; the worker, or None when refused."""
        noisy, denoised = self.noisy.value, self.denoised.value
        if noisy is None or self.worker is not None:
            self.summary.value = "choose a noisy layer" if noisy is None else self.summary.value
            return None
        if denoised is not None and denoised.data.shape != noisy.data.shape:
            self.summary.value = (
                f"{denoised.name} {denoised.data.shape} differs from {noisy.name} "
                f"{noisy.data.shape}"
            )
            return None
        from napari.qt.threading import create_worker

        metadata = dict(noisy.metadata)
        other = None if denoised is None or denoised is noisy else denoised.data
        worker = create_worker(_safe_assess, noisy.data, other, metadata, _start_thread=False)
        worker.returned.connect(lambda result: self._show(noisy, denoised, result))
        worker.finished.connect(self._idle)
        self.worker = worker
        self.assess_button.enabled = False
        self.summary.value = "assessing..."
        worker.start()
        return worker

    def _idle(self) -> None:
        self.worker = None
        self.assess_button.enabled = True

    def _show(self, noisy: Any, denoised: Any, result: Any) -> None:
        if isinstance(result, str):
            self.summary.value = result
            from napari.utils.notifications import show_error

            show_error(result)
            return
        self.rows, self.result = result
        x, label = band_axis(noisy.metadata, noisy.data.shape[0])
        names = {"noisy": noisy.name, "denoised": denoised.name if denoised else "denoised"}
        colours = {"noisy": "#9a9a9a", "denoised": "#ffb000"}
        sigma_ax, stripe_ax = self.canvas.axes
        for ax, column, title in (
            (sigma_ax, "sigma", "noise sigma (wavelet MAD)"),
            (stripe_ax, "stripe_index", "stripe index"),
        ):
            ax.clear()
            style(ax)
            for cube in ("noisy", "denoised"):
                values = [r[column] for r in self.rows if r["cube"] == cube]
                if values:
                    ax.plot(x, values, color=colours[cube], lw=1.2, label=names[cube])
            ax.set_title(title)
            ax.set_xlabel(label)
            ax.set_ylabel("data units")
            legend(ax)
        self.canvas.draw_idle()
        self.summary.value = _summary_text(self.result)


def _safe_assess(noisy: Any, denoised: Any, metadata: dict[str, Any]) -> Any:
    """:func:`assess_layers`, or the one-line error (the worker never raises for input)."""
    try:
        return assess_layers(noisy, denoised, metadata)
    except Ras2sError as err:
        return str(err).splitlines()[0]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _summary_text(summary: dict[str, Any]) -> str:
    cubes = summary["cubes"]
    noisy = cubes["noisy"]
    lines = [
        f"noisy: median sigma {_fmt(noisy['median_sigma'])}, "
        f"stripe index {_fmt(noisy['median_stripe_index'])}"
    ]
    if "denoised" in cubes:
        d = cubes["denoised"]
        lines.append(
            f"denoised: median sigma {_fmt(d['median_sigma'])}, "
            f"stripe index {_fmt(d['median_stripe_index'])}"
        )
        lines.append(
            f"sigma ratio {_fmt(d['sigma_ratio'])}, "
            f"residual correlation {_fmt(d['residual_correlation'])}"
        )
    return "\n".join(lines)
