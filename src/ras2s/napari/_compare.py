"""The Compare dock widget: a noisy layer against its denoised version.

- Clicking a pixel in the viewer plots its spectrum, noisy against denoised, against
  wavelength when the layer has wavelengths (a vertical line marks the band shown).
- "Residual layer" adds ``<noisy> residual`` (noisy minus denoised, a diverging
  colormap with symmetric limits).
- "Link contrast limits" keeps the two layers' contrast limits equal, both ways.

The Denoise widget fills it in after a run (:meth:`CompareWidget.set_pair`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton

from ._layers import (
    DENOISE_KEY,
    LAYER_EVENTS,
    cube_layers,
    disconnect_layer_events,
    layer_like,
    residual,
    symmetric_limits,
)
from ._plot import band_axis, legend, plot_canvas, style

if TYPE_CHECKING:
    import napari

__all__ = ["CompareWidget"]

_NONE = ("(none)", None)


class CompareWidget(Container):
    """Spectrum on click, residual layer and linked contrast for a noisy/denoised pair."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self.noisy = ComboBox(label="noisy", choices=self._choices, nullable=True)
        self.denoised = ComboBox(label="denoised", choices=self._choices, nullable=True)
        self.link = CheckBox(text="link contrast limits", value=True)
        self.residual_button = PushButton(text="Residual layer (noisy - denoised)")
        self.where = Label(value="click a pixel to plot its spectrum")
        self.extend([self.noisy, self.denoised, self.link, self.residual_button, self.where])
        self.canvas = plot_canvas(1, height=2.8)
        self.native.layout().addWidget(self.canvas)
        self.pixel: tuple[int, int] | None = None
        self._linked: tuple[Any, Any] | None = None

        self.noisy.changed.connect(self._pair_changed)
        self.denoised.changed.connect(self._pair_changed)
        self.link.changed.connect(self._relink)
        self.residual_button.changed.connect(self.add_residual)
        viewer.mouse_drag_callbacks.append(self._on_click)
        viewer.dims.events.current_step.connect(self._redraw)
        for event in LAYER_EVENTS:
            getattr(viewer.layers.events, event).connect(self._layers_changed)
        self.native.destroyed.connect(self._disconnect)
        self._layers_changed()

    # ---------------------------------------------------------------- choices

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in cube_layers(self._viewer)]

    def _layers_changed(self, _event: Any = None) -> None:
        self.reset_choices()
        if self.noisy.value is None or self.denoised.value is None:
            self._guess_pair()

    def _guess_pair(self) -> None:
        """Pick the last denoised layer and the layer it came from, when both are here."""
        layers = {layer.name: layer for layer in cube_layers(self._viewer)}
        for layer in reversed(list(layers.values())):
            source = layer.metadata.get(DENOISE_KEY, {}).get("from")
            if source in layers:
                self.set_pair(layers[source], layer)
                return

    def set_pair(self, noisy: Any, denoised: Any) -> None:
        """Compare ``noisy`` with ``denoised`` (two image layers of one shape)."""
        self.reset_choices()
        with self.noisy.changed.blocked(), self.denoised.changed.blocked():
            self.noisy.value = noisy
            self.denoised.value = denoised
        self._pair_changed()

    def _pair_changed(self, _value: Any = None) -> None:
        self._relink()
        noisy = self.noisy.value
        if noisy is not None and self.pixel is None:
            self.pixel = (int(noisy.data.shape[-2]) // 2, int(noisy.data.shape[-1]) // 2)
        self._redraw()

    # ---------------------------------------------------------------- contrast link

    def _relink(self, _value: Any = None) -> None:
        self._unlink()
        noisy, denoised = self.noisy.value, self.denoised.value
        if not self.link.value or noisy is None or denoised is None or noisy is denoised:
            return
        noisy.events.contrast_limits.connect(self._copy_limits)
        denoised.events.contrast_limits.connect(self._copy_limits)
        self._linked = (noisy, denoised)
        denoised.contrast_limits = noisy.contrast_limits

    def _unlink(self) -> None:
        if self._linked is not None:
            for layer in self._linked:
                layer.events.contrast_limits.disconnect(self._copy_limits)
        self._linked = None

    def _copy_limits(self, event: Any) -> None:
        if self._linked is None:
            return
        a, b = self._linked
        source = event.source if event is not None and event.source in (a, b) else a
        target = b if source is a else a
        limits = tuple(source.contrast_limits)
        if tuple(target.contrast_limits) != limits:
            target.contrast_limits = limits

    # ---------------------------------------------------------------- residual

    def add_residual(self, _value: Any = None) -> Any:
        """Add ``<noisy> residual`` (noisy - denoised); the new layer, or None."""
        noisy, denoised = self.noisy.value, self.denoised.value
        if noisy is None or denoised is None:
            self.where.value = "choose a noisy and a denoised layer first"
            return None
        try:
            data = residual(noisy.data, denoised.data)
        except ValueError as err:
            self.where.value = str(err)
            return None
        metadata = {**noisy.metadata, "residual_of": [noisy.name, denoised.name]}
        layer = layer_like(
            noisy,
            data,
            name=f"{noisy.name} residual",
            metadata=metadata,
            colormap="RdBu_r",
            contrast_limits=symmetric_limits(data),
            gamma=1.0,
        )
        self._viewer.layers.append(layer)
        return layer

    # ---------------------------------------------------------------- spectrum

    def _on_click(self, viewer: Any, event: Any) -> None:
        if getattr(event, "type", "mouse_press") != "mouse_press":
            return
        layer = self.noisy.value
        if layer is None:
            return
        coords = np.asarray(layer.world_to_data(event.position))
        y, x = (int(np.floor(c + 0.5)) for c in coords[-2:])
        height, width = layer.data.shape[-2:]
        if 0 <= y < height and 0 <= x < width:
            self.plot_at(y, x)

    def plot_at(self, y: int, x: int) -> None:
        """Plot the spectra of pixel ``(y, x)`` (data coordinates of the noisy layer)."""
        self.pixel = (int(y), int(x))
        self._redraw()

    def spectra(self) -> dict[str, np.ndarray]:
        """The spectra now plotted, by layer name (float64)."""
        out: dict[str, np.ndarray] = {}
        if self.pixel is None:
            return out
        y, x = self.pixel
        for layer in (self.noisy.value, self.denoised.value):
            if layer is not None and y < layer.data.shape[-2] and x < layer.data.shape[-1]:
                out[layer.name] = np.asarray(layer.data[:, y, x], dtype=np.float64)
        return out

    def _redraw(self, _event: Any = None) -> None:
        ax = self.canvas.axes[0]
        ax.clear()
        style(ax)
        noisy = self.noisy.value
        spectra = self.spectra()
        if noisy is None or not spectra:
            self.canvas.draw_idle()
            return
        x, label = band_axis(noisy.metadata, noisy.data.shape[0])
        colours = ("#9a9a9a", "#ffb000")
        for (name, values), colour in zip(spectra.items(), colours, strict=False):
            if values.shape[0] == x.shape[0]:
                ax.plot(x, values, color=colour, lw=1.2, label=name)
        band = int(self._viewer.dims.current_step[0]) if self._viewer.dims.ndim == 3 else None
        if band is not None and 0 <= band < x.shape[0]:
            ax.axvline(x[band], color="#5c8fd6", lw=0.8, ls="--")
        y, xx = self.pixel
        ax.set_title(f"spectrum at (y={y}, x={xx})")
        ax.set_xlabel(label)
        ax.set_ylabel("value")
        legend(ax)
        self.where.value = f"pixel (y={y}, x={xx})"
        self.canvas.draw_idle()

    def _disconnect(self, *_args: Any) -> None:
        """The widget is gone: nothing of the viewer may call it any more."""
        self._unlink()
        if self._on_click in self._viewer.mouse_drag_callbacks:
            self._viewer.mouse_drag_callbacks.remove(self._on_click)
        self._viewer.dims.events.current_step.disconnect(self._redraw)
        disconnect_layer_events(self._viewer, self._layers_changed)
