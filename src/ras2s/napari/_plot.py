"""A matplotlib canvas styled like napari's dark theme, for the dock widgets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["band_axis", "legend", "plot_canvas", "style"]

_BACKGROUND = "#262930"
_FOREGROUND = "#d1d2d4"


def band_axis(metadata: dict[str, Any] | None, bands: int) -> tuple[np.ndarray, str]:
    """The x values and label of a per-band plot: wavelengths when the layer has them."""
    wavelengths = (metadata or {}).get("wavelengths")
    if isinstance(wavelengths, Sequence) and len(wavelengths) == bands:
        units = (metadata or {}).get("wavelength_units")
        return np.asarray(wavelengths, dtype=float), f"wavelength ({units})" if units else (
            "wavelength"
        )
    return np.arange(bands, dtype=float), "band"


def plot_canvas(rows: int = 1, *, height: float = 2.6) -> Any:
    """A ``FigureCanvasQTAgg`` with ``rows`` stacked axes (``canvas.axes``), dark styled.

    matplotlib is imported here, when a widget that plots is first created.
    """
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.0, height * rows), facecolor=_BACKGROUND, layout="constrained")
    canvas = FigureCanvasQTAgg(figure)
    canvas.axes = [figure.add_subplot(rows, 1, i + 1) for i in range(rows)]
    for ax in canvas.axes:
        style(ax)
    canvas.setMinimumHeight(int(160 * rows))
    canvas.setMinimumWidth(240)
    return canvas


def style(ax: Any) -> None:
    """Give one axes napari's dark colours (call again after ``ax.clear()``)."""
    ax.set_facecolor(_BACKGROUND)
    for spine in ax.spines.values():
        spine.set_color(_FOREGROUND)
    ax.tick_params(colors=_FOREGROUND, labelsize=8)
    ax.xaxis.label.set_color(_FOREGROUND)
    ax.yaxis.label.set_color(_FOREGROUND)
    ax.title.set_color(_FOREGROUND)
    ax.xaxis.label.set_size(8)
    ax.yaxis.label.set_size(8)
    ax.title.set_size(9)


def legend(ax: Any) -> None:
    """A small legend in napari's colours."""
    leg = ax.legend(fontsize=7, facecolor=_BACKGROUND, edgecolor=_FOREGROUND, framealpha=0.8)
    for text in leg.get_texts():
        text.set_color(_FOREGROUND)
