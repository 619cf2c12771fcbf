"""In which value domain a noisy or denoised file lies, so that it is scored right.

``ras2s noise`` writes its output in the normalised [0, 1] domain of the clean cube
(``(x - lo) / (hi - lo)``, ``lo``/``hi`` the clean cube's minimum and maximum), unless
``--keep-range`` maps it back to the clean cube's units; its sidecar ``OUTPUT.json``
says which, with ``lo`` and ``hi``. ``ras2s denoise`` keeps its input's domain and its
sidecar names that input. ``ras2s report`` maps every cube with the clean cube's
``lo``/``hi``; applied to a cube already in [0, 1] that map is wrong, silently: a
uint16 clean cube and a normalised noisy one scored 5.43 dB (noisy) and 11.03 dB
(denoised), no warning.

:func:`scoring_range` gives, for one file, the ``(lo, hi)`` that maps it onto the clean
cube's [0, 1]: from noise's sidecar when there is one (directly, or through the sidecar
of ``denoise`` naming a noisy input), else the clean cube's own range after checking
that the file's values lie in it; a file whose range disagrees is refused, naming
``--keep-range``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["DOMAIN_KEEP", "DOMAIN_NORMALISED", "ranges_disagree", "scoring_range", "sidecar"]

#: ``domain`` of noise's sidecar: written in the normalised [0, 1] domain (the default).
DOMAIN_NORMALISED = "normalised [0, 1]"
#: ``domain`` of noise's sidecar with ``--keep-range``: the clean cube's units.
DOMAIN_KEEP = "input range (--keep-range)"
#: A file's range disagrees with the clean one when it covers less than this share of
#: the clean range, or spans more than :data:`_WIDER` times it.
_COVER = 0.5
_WIDER = 10.0


def sidecar(path: str | os.PathLike) -> dict | None:
    """The JSON record written beside ``path`` by ``ras2s noise`` or ``denoise`` (or None).

    ``<path>.json``; anything unreadable or not a JSON object counts as no record.
    """
    p = Path(path)
    record_path = p.with_name(p.name + ".json")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _noise_domain(record: dict | None) -> tuple[str, float, float] | None:
    """``(domain, lo, hi)`` from a sidecar of ``ras2s noise``; None for any other record."""
    if not record or "case" not in record:
        return None
    norm = record.get("normalisation") or {}
    try:
        lo, hi = float(norm["lo"]), float(norm["hi"])
    except (KeyError, TypeError, ValueError):
        return None
    domain = record.get("domain")
    if domain not in (DOMAIN_NORMALISED, DOMAIN_KEEP):
        return None
    return domain, lo, hi


def _same(a: float, b: float, span: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9 * abs(span))


def ranges_disagree(data_lo: float, data_hi: float, lo: float, hi: float) -> bool:
    """True when ``[data_lo, data_hi]`` cannot be a noisy or denoised ``[lo, hi]``.

    It must cover at least half of the clean range and span at most ten times it (heavy
    noise widens the range, a change of units or of domain moves or rescales it).

    Examples
    --------
    >>> ranges_disagree(-0.1, 1.2, 0.0, 4095.0)  # [0, 1] against a 12-bit cube
    True
    >>> ranges_disagree(-300.0, 4400.0, 0.0, 4095.0)  # noise around the same range
    False
    """
    span = hi - lo
    overlap = min(data_hi, hi) - max(data_lo, lo)
    return overlap < _COVER * span or (data_hi - data_lo) > _WIDER * span


def scoring_range(
    path: str | os.PathLike,
    data: np.ndarray,
    lo: float,
    hi: float,
    *,
    clean: str | os.PathLike = "the clean cube",
) -> tuple[float, float]:
    """``(lo, hi)`` that map the cube ``data`` read from ``path`` onto the clean [0, 1].

    Parameters
    ----------
    path : str or path-like
        Where ``data`` was read; its sidecar (``<path>.json``) is consulted.
    data : numpy.ndarray
        The noisy or denoised cube, any shape.
    lo, hi : float
        The clean cube's minimum and maximum (the map of the clean cube to [0, 1]).
    clean : str or path-like
        The clean cube's name, for messages.

    Returns
    -------
    tuple of float
        ``(0.0, 1.0)`` for a file in the normalised domain (noise's default output, or
        a denoised copy of it), else ``(lo, hi)``.

    Raises
    ------
    InputError
        A noise sidecar made from a cube of another range than the clean one, or no
        sidecar and a value range that disagrees with the clean cube's (the message
        names ``--keep-range``).
    """
    record = sidecar(path)
    found = _noise_domain(record)
    via = path
    if found is None and record and isinstance(record.get("input"), dict):
        source = record["input"].get("path")  # a denoised file: the domain of its input
        if source:
            found, via = _noise_domain(sidecar(source)), source
    if found is not None:
        domain, made_lo, made_hi = found
        if not (_same(made_lo, lo, hi - lo) and _same(made_hi, hi, hi - lo)):
            raise InputError(
                f"{path}: {via} was made by ras2s noise from a cube of range "
                f"[{made_lo:g}, {made_hi:g}] (its .json sidecar), not from {clean} "
                f"[{lo:g}, {hi:g}]; give the clean cube it was made from"
            )
        return (0.0, 1.0) if domain == DOMAIN_NORMALISED else (lo, hi)
    finite = np.asarray(data)[np.isfinite(data)]
    if finite.size and ranges_disagree(float(finite.min()), float(finite.max()), lo, hi):
        raise InputError(
            f"{path}: its values [{finite.min():g}, {finite.max():g}] do not lie in the "
            f"range of {clean} [{lo:g}, {hi:g}] (no ras2s sidecar says why); a cube from "
            "`ras2s noise` is in the normalised [0, 1] domain unless made with "
            "--keep-range: keep its OUTPUT.json beside it, or remake it with --keep-range"
        )
    return lo, hi
