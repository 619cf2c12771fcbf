"""Layer helpers shared by the widgets: which layers are cubes, and new layers like old."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DENOISE_KEY",
    "LAYER_EVENTS",
    "cube_layers",
    "disconnect_layer_events",
    "layer_like",
    "residual",
    "symmetric_limits",
]

#: Key of the layer ``metadata`` entry the Denoise widget adds to a result: what was
#: denoised (``from``: the source layer's name), how, and what it took.
DENOISE_KEY = "ras2s_denoise"

#: Layer-list events after which the widgets refresh their layer choices.
LAYER_EVENTS = ("inserted", "removed", "moved")

#: Layer state copied from the source layer to a result (geometry and display).
_COPIED = (
    "scale",
    "translate",
    "rotate",
    "shear",
    "affine",
    "units",
    "axis_labels",
    "blending",
    "interpolation2d",
    "interpolation3d",
    "rendering",
    "depiction",
    "plane",
    "projection_mode",
)


def disconnect_layer_events(viewer: Any, callback: Any, *_args: Any) -> None:
    """Stop the viewer's layer list calling ``callback`` (its widget was destroyed)."""
    for event in LAYER_EVENTS:
        getattr(viewer.layers.events, event).disconnect(callback)


def cube_layers(viewer: Any) -> list[Any]:
    """The viewer's image layers that hold a cube: 3-D, not RGB, not multiscale."""
    from napari.layers import Image

    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb and not layer.multiscale
    ]


def layer_like(
    source: Any, data: np.ndarray, *, name: str, metadata: dict[str, Any], **display: Any
) -> Any:
    """A new image layer holding ``data``, placed and shown like ``source``.

    It gets ``source``'s scale, translate, rotation, units, axis labels and display
    settings; ``display`` overrides them (colormap, contrast limits, ...).
    """
    from napari.layers import Image

    _, state, _ = source.as_layer_data_tuple()
    kwargs = {k: state[k] for k in _COPIED if k in state}
    kwargs.update(colormap=state.get("colormap"), gamma=state.get("gamma", 1.0))
    kwargs.update(display)
    return Image(data, name=name, metadata=metadata, **kwargs)


def residual(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """``noisy - denoised`` in float32 (float64 when either is float64)."""
    noisy, denoised = np.asarray(noisy), np.asarray(denoised)
    if noisy.shape != denoised.shape:
        raise ValueError(f"the layers differ in shape: {noisy.shape} and {denoised.shape}")
    dtype = np.result_type(noisy.dtype, denoised.dtype, np.float32)
    dtype = np.float64 if dtype == np.float64 else np.float32
    return noisy.astype(dtype) - denoised.astype(dtype)


def symmetric_limits(data: np.ndarray, percentile: float = 99.5) -> tuple[float, float]:
    """``(-m, m)`` with ``m`` the ``percentile`` of ``|data|`` (a strided sample)."""
    flat = np.abs(np.asarray(data).reshape(-1))
    flat = flat[:: max(1, flat.size // 1_000_000)]
    flat = flat[np.isfinite(flat)]
    m = float(np.percentile(flat, percentile)) if flat.size else 1.0
    m = m if m > 0 else 1.0
    return -m, m
