"""The methods an evaluation scores: the network (through :func:`ras2s.denoise`) and baselines.

Each method is a callable ``(noisy01, noise params) -> estimate`` on a cube already in
the normalised domain.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import inference
from ..errors import InputError

__all__ = ["BUILTIN_METHODS", "Method", "resolve_methods"]

#: Methods that need no ``ras2s.baselines``: the network as the paper tests it, and
#: the end-user :func:`ras2s.denoise` path (which re-normalises the noisy cube: as the
#: weights' card asks, by its minimum and maximum, or by its 0.5th and 99.5th percentiles).
BUILTIN_METHODS: tuple[str, ...] = (
    "ras2s",
    "ras2s-denoise",
    "ras2s-denoise-minmax",
    "ras2s-denoise-percentile",
)

Method = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def _baselines() -> dict[str, Callable[..., np.ndarray]]:
    try:
        module = importlib.import_module("ras2s.baselines")
    except ImportError as err:
        raise InputError(
            f"the baseline methods (ras2s.baselines) could not be imported ({err}); "
            f"available methods: {', '.join(BUILTIN_METHODS)}"
        ) from None
    return dict(getattr(module, "METHODS", {}))


def resolve_methods(
    methods: Sequence[str],
    weights: str | os.PathLike,
    device: Any,
    precision: str = "auto",
    band_window: int | str | None = "auto",
) -> tuple[dict[str, Method], dict[str, Any], dict[str, Any] | None]:
    """Callables ``(noisy01, noise params) -> estimate``, method info, weights info."""
    names = [str(m).strip() for m in methods if str(m).strip()]
    if "noisy" in names:
        names.remove("noisy")  # always the first row
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"methods listed twice: {', '.join(dupes)}")
    baselines: dict[str, Callable[..., np.ndarray]] = {}
    others = [n for n in names if n not in BUILTIN_METHODS]
    if others:
        baselines = _baselines()
        missing = [n for n in others if n not in baselines]
        if missing:
            available = ", ".join([*BUILTIN_METHODS, *sorted(baselines)])
            raise InputError(f"unknown method(s) {', '.join(missing)}; available: {available}")
    resolved: dict[str, Method] = {}
    info: dict[str, Any] = {}
    weights_info = None
    model = None
    if any(n in BUILTIN_METHODS for n in names):
        from ..io import sha256_file
        from ..model import count_parameters
        from ..weights import load_model, resolve

        torch_device = inference.resolve_device(device)  # InputError when CUDA is asked but absent
        path = resolve(weights)
        model = load_model(weights, torch_device, precision=precision)
        weights_info = {
            "name": str(weights),
            "path": str(path),
            "sha256": sha256_file(path),
            "card": model.card,
            "config": model.config.to_dict(),
            "parameters": count_parameters(model),
            "precision": model.precision,
            "band_window": inference.resolve_band_window(band_window, model),
            "normalise": inference.resolve_normalise("auto", model),
        }
        band_window = weights_info["band_window"]
        device = torch_device
    for name in names:
        if name == "ras2s":
            resolved[name] = lambda noisy, params, m=model: inference.denoise(
                noisy, model=m, device=device, normalise="none", band_window=band_window
            )
            info[name] = {
                "kind": "ras2s.denoise with normalise='none': the network on the cube in the "
                "normalised domain (paper protocol)",
                "parameters": weights_info["parameters"],
            }
        elif name.startswith("ras2s-denoise"):
            how = name.removeprefix("ras2s-denoise").removeprefix("-") or "auto"
            how = inference.resolve_normalise(how, model)
            resolved[name] = lambda noisy, params, m=model, how=how: inference.denoise(
                noisy, model=m, device=device, normalise=how, band_window=band_window
            )
            by = "0.5th and 99.5th percentiles" if how == "percentile" else "minimum and maximum"
            info[name] = {
                "kind": f"ras2s.denoise with normalise='{how}'"
                + (" (the weights' choice)" if name == "ras2s-denoise" else "")
                + f": re-normalises the noisy cube by its {by}",
                "normalise": how,
                "parameters": weights_info["parameters"],
            }
        else:
            fn = baselines[name]

            def call(noisy: np.ndarray, params: dict[str, Any], fn=fn) -> np.ndarray:
                sigma = (
                    params.get("sigma")
                    if params.get("case", "").startswith(("iid", "gaussian"))
                    else None
                )
                return fn(noisy, sigma=sigma)

            resolved[name] = call
            info[name] = {
                "kind": "baseline (ras2s.baselines.METHODS)",
                "callable": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}",
                "sigma": "true sigma (data units) for iid cases, None otherwise",
                "parameters": None,
            }
    return resolved, info, weights_info
