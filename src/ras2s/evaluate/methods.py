"""The methods an evaluation scores: the network (through :func:`ras2s.denoise`) and baselines.

Each method is a callable ``(noisy01, noise params) -> estimate`` on a cube already in
the normalised domain. :func:`resolve_methods` checks the names, loads the weights once,
and hands each name to the builder of its kind: :func:`_paper_protocol` (``ras2s``),
:func:`_end_user_path` (``ras2s-denoise[-HOW]``) or :func:`_baseline` (the rest).
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
#: the end-user :func:`ras2s.denoise` path, which re-normalises the noisy cube (as the
#: weights' card asks, or as the suffix says).
BUILTIN_METHODS: tuple[str, ...] = (
    "ras2s",
    "ras2s-denoise",
    "ras2s-denoise-clean",
    "ras2s-denoise-minmax",
    "ras2s-denoise-percentile",
)

#: How each normalisation re-maps the noisy cube, for the method descriptions.
_MAPPED_BY = {
    "clean": "estimated clean range (min/max of a median-filtered, smoothed copy)",
    "minmax": "minimum and maximum",
    "percentile": "0.5th and 99.5th percentiles",
}

Method = Callable[[np.ndarray, dict[str, Any]], np.ndarray]
MethodInfo = dict[str, Any]


def _baselines() -> dict[str, Callable[..., np.ndarray]]:
    try:
        module = importlib.import_module("ras2s.baselines")
    except ImportError as err:
        raise InputError(
            f"the baseline methods (ras2s.baselines) could not be imported ({err}); "
            f"available methods: {', '.join(BUILTIN_METHODS)}"
        ) from None
    return dict(getattr(module, "METHODS", {}))


def _checked_names(methods: Sequence[str]) -> list[str]:
    """The method names without blanks and ``noisy`` (always the first row); no duplicates."""
    names = [str(m).strip() for m in methods if str(m).strip()]
    if "noisy" in names:
        names.remove("noisy")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"methods listed twice: {', '.join(dupes)}")
    return names


def _known_baselines(names: list[str]) -> dict[str, Callable[..., np.ndarray]]:
    """The baselines among ``names``; an unknown name is an InputError listing the known."""
    others = [n for n in names if n not in BUILTIN_METHODS]
    if not others:
        return {}
    baselines = _baselines()
    missing = [n for n in others if n not in baselines]
    if missing:
        available = ", ".join([*BUILTIN_METHODS, *sorted(baselines)])
        raise InputError(f"unknown method(s) {', '.join(missing)}; available: {available}")
    return baselines


def _load_network(
    weights: str | os.PathLike, device: Any, precision: str, band_window: int | str | None
) -> tuple[Any, dict[str, Any], Any]:
    """The loaded model, the weights' record for ``results.json`` and the torch device."""
    from ..io import sha256_file
    from ..model import count_parameters
    from ..weights import load_model, resolve

    torch_device = inference.resolve_device(device)  # InputError when CUDA is asked but absent
    path = resolve(weights)
    model = load_model(weights, torch_device, precision=precision)
    info = {
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
    return model, info, torch_device


def _paper_protocol(model: Any, weights: dict[str, Any], device: Any) -> tuple[Method, MethodInfo]:
    """``ras2s``: the network on the cube as it is (the paper's test protocol)."""

    def run(noisy: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return inference.denoise(
            noisy,
            model=model,
            device=device,
            normalise="none",
            band_window=weights["band_window"],
        )

    info = {
        "kind": "ras2s.denoise with normalise='none': the network on the cube in the "
        "normalised domain (paper protocol)",
        "parameters": weights["parameters"],
    }
    return run, info


def _end_user_path(
    name: str, model: Any, weights: dict[str, Any], device: Any
) -> tuple[Method, MethodInfo]:
    """``ras2s-denoise[-HOW]``: :func:`ras2s.denoise` re-normalising the noisy cube."""
    asked = name.removeprefix("ras2s-denoise").removeprefix("-") or "auto"
    how = inference.resolve_normalise(asked, model)

    def run(noisy: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return inference.denoise(
            noisy,
            model=model,
            device=device,
            normalise=how,
            band_window=weights["band_window"],
        )

    choice = " (the weights' choice)" if asked == "auto" else ""
    info = {
        "kind": f"ras2s.denoise with normalise='{how}'{choice}: re-normalises the noisy "
        f"cube by its {_MAPPED_BY.get(how, how)}",
        "normalise": how,
        "parameters": weights["parameters"],
    }
    return run, info


def _baseline(name: str, fn: Callable[..., np.ndarray]) -> tuple[Method, MethodInfo]:
    """A classical method of ``ras2s.baselines``: the true sigma for i.i.d. cases only."""

    def run(noisy: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        iid = params.get("case", "").startswith(("iid", "gaussian"))
        return fn(noisy, sigma=params.get("sigma") if iid else None)

    info = {
        "kind": "baseline (ras2s.baselines.METHODS)",
        "callable": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}",
        "sigma": "true sigma (data units) for iid cases, None otherwise",
        "parameters": None,
    }
    return run, info


def resolve_methods(
    methods: Sequence[str],
    weights: str | os.PathLike,
    device: Any,
    precision: str = "auto",
    band_window: int | str | None = "auto",
) -> tuple[dict[str, Method], dict[str, Any], dict[str, Any] | None]:
    """Callables ``(noisy01, noise params) -> estimate``, method info, weights info.

    The weights are loaded once, and only when a network method is asked for; the
    weights info is then what ``results.json`` records about them (else ``None``).
    """
    names = _checked_names(methods)
    baselines = _known_baselines(names)
    model, weights_info = None, None
    if any(n in BUILTIN_METHODS for n in names):
        model, weights_info, device = _load_network(weights, device, precision, band_window)
    resolved: dict[str, Method] = {}
    info: dict[str, Any] = {}
    for name in names:
        if name == "ras2s":
            resolved[name], info[name] = _paper_protocol(model, weights_info, device)
        elif name in BUILTIN_METHODS:
            resolved[name], info[name] = _end_user_path(name, model, weights_info, device)
        else:
            resolved[name], info[name] = _baseline(name, baselines[name])
    return resolved, info, weights_info
