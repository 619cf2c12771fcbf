"""Classical hyperspectral denoisers behind one interface.

Every method is a function ``f(noisy, *, sigma=None, **params) -> ndarray``: ``noisy``
is a float cube ``(bands, H, W)`` in about [0, 1]; the result is a new float32 cube of
the same shape (not clipped). ``sigma`` is the noise standard deviation in data units
(``30/255`` for the paper's "sigma 30"), one number or one per band; ``None``
estimates it per band with :func:`estimate_sigma`.

=============  ==================================================  ==================
name           method                                              needs
=============  ==================================================  ==================
``bm4d``       BM4D on the cube (Maggioni et al. 2013)             ``bm4d``
``bm3d``       BM3D band by band (Dabov et al. 2007)               ``bm3d``
``tv``         total variation, 3-D by default (Chambolle 2004)    ``scikit-image``
``wavelet``    BayesShrink band by band (Chang et al. 2000)        ``scikit-image``
``hyres``      HyRes low rank + wavelet, SURE (Rasti et al. 2017)  ``PyWavelets``
=============  ==================================================  ==================

All of them come with ``pip install 'ras2s[baselines]'``. bm3d and bm4d are free for
non-commercial use only (Tampere University licence), see ``docs/baselines.md``.

Examples
--------
>>> import numpy as np
>>> from ras2s import baselines
>>> rng = np.random.default_rng(0)
>>> clean = np.tile(np.linspace(0.2, 0.8, 32), (4, 32, 1)).astype(np.float32)
>>> noisy = clean + 0.1 * rng.standard_normal(clean.shape).astype(np.float32)
>>> out = baselines.run("tv", noisy)
>>> out.shape, out.dtype
((4, 32, 32), dtype('float32'))
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ras2s.errors import InputError

from ._common import EXTRA_HINT, MissingDependencyError, estimate_sigma, require
from .methods import bm3d_bands, bm4d_cube, hyres, tv, wavelet

__all__ = [
    "METHODS",
    "MissingDependencyError",
    "available",
    "describe",
    "estimate_sigma",
    "run",
]


@dataclass(frozen=True)
class _Spec:
    summary: str
    reference: str
    modules: tuple[str, ...]  # importable modules needed
    distributions: tuple[str, ...]  # PyPI names, for versions
    licence: str
    sigma_use: str


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "bm4d": bm4d_cube,
    "bm3d": bm3d_bands,
    "tv": tv,
    "wavelet": wavelet,
    "hyres": hyres,
}
"""Name -> denoiser ``f(noisy, *, sigma=None, **params) -> float32 cube``."""

_SPECS: dict[str, _Spec] = {
    "bm4d": _Spec(
        "BM4D on the (H, W, bands) volume; per-band whitening for non-i.i.d. sigma",
        "Maggioni, Katkovnik, Egiazarian, Foi, IEEE TIP 22(1), 2013",
        ("bm4d",),
        ("bm4d",),
        "Tampere University, free for non-commercial use only",
        "RMS of the per-band sigmas, or per-band whitening when max/min > 1.25",
    ),
    "bm3d": _Spec(
        "BM3D on every band separately, each with its own sigma",
        "Dabov, Foi, Katkovnik, Egiazarian, IEEE TIP 16(8), 2007",
        ("bm3d",),
        ("bm3d", "bm4d"),
        "Tampere University, free for non-commercial use only",
        "per band",
    ),
    "tv": _Spec(
        "total-variation denoising (Chambolle), 3-D over rows, columns and bands",
        "Chambolle, J. Math. Imaging Vision 20, 2004; scikit-image denoise_tv_chambolle",
        ("skimage.restoration",),
        ("scikit-image",),
        "BSD-3-Clause (scikit-image)",
        "weight = weight_per_sigma * sigma (RMS over bands in 3d mode)",
    ),
    "wavelet": _Spec(
        "BayesShrink soft wavelet thresholding on every band",
        "Chang, Yu, Vetterli, IEEE TIP 9(9), 2000; scikit-image denoise_wavelet",
        ("skimage.restoration", "pywt"),
        ("scikit-image", "PyWavelets"),
        "BSD-3-Clause (scikit-image), MIT (PyWavelets)",
        "per band",
    ),
    "hyres": _Spec(
        "HyRes: SVD subspace of the whitened cube + SURE soft wavelet thresholding, "
        "rank by SURE (implemented in ras2s from the paper, simplified)",
        "Rasti, Ulfarsson, Ghamisi, IEEE GRSL 14(12), 2017, doi:10.1109/LGRS.2017.2764059",
        ("pywt",),
        ("PyWavelets",),
        "MIT (this implementation, ras2s); MIT (PyWavelets)",
        "per band, for noise whitening",
    ),
}


def _check_name(name: str) -> str:
    if name not in METHODS:
        raise InputError(f"unknown baseline {name!r}; available: {', '.join(sorted(METHODS))}")
    return name


def available() -> dict[str, str | None]:
    """Which baselines can run here.

    Returns
    -------
    dict
        Name -> ``None`` when usable, else why not (with the install command).
    """
    status: dict[str, str | None] = {}
    for name, spec in _SPECS.items():
        reason = None
        for module in spec.modules:
            try:
                require(module, name)
            except MissingDependencyError:
                reason = f"needs {module.split('.')[0]}: {EXTRA_HINT}"
                break
        status[name] = reason
    return status


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(name: str, **params: Any) -> dict[str, Any]:
    """What a baseline is and the parameters it runs with (JSON-serialisable).

    Parameters
    ----------
    name : str
        A key of :data:`METHODS`.
    **params
        Overrides, as they would be passed to :func:`run`; unknown ones raise.

    Returns
    -------
    dict
        ``name``, ``summary``, ``reference``, ``licence``, ``packages`` (name ->
        installed version or None), ``sigma`` (how sigma is used; ``None`` means
        estimated per band with the wavelet MAD estimator) and ``params`` (every
        keyword parameter with its effective value).
    """
    func = METHODS[_check_name(name)]
    spec = _SPECS[name]
    defaults = {
        p.name: p.default
        for p in inspect.signature(func).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "sigma"
    }
    unknown = sorted(set(params) - set(defaults) - {"sigma"})
    if unknown:
        raise InputError(
            f"baseline {name!r} has no parameter(s) {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(defaults)) or 'none'} (and sigma)"
        )
    effective = {**defaults, **{k: v for k, v in params.items() if k != "sigma"}}
    sigma = params.get("sigma")
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=float).tolist()
    return {
        "name": name,
        "summary": spec.summary,
        "reference": spec.reference,
        "licence": spec.licence,
        "packages": {d: _version(d) for d in spec.distributions},
        "sigma": sigma,
        "sigma_estimator": "wavelet MAD per band (ras2s.baselines.estimate_sigma)"
        if sigma is None
        else None,
        "sigma_use": spec.sigma_use,
        "params": effective,
    }


def run(name: str, noisy: np.ndarray, *, sigma: Any = None, **params: Any) -> np.ndarray:
    """Denoise ``noisy`` with the baseline ``name``.

    Parameters
    ----------
    name : str
        One of :data:`METHODS` (``bm4d``, ``bm3d``, ``tv``, ``wavelet``, ``hyres``).
    noisy : ndarray, shape (bands, H, W)
        Noisy float cube in about [0, 1]; not modified.
    sigma : float, sequence of float or None
        Noise sigma in data units, one or one per band; ``None`` estimates it per band.
    **params
        The method's own keyword parameters (see :func:`describe`).

    Returns
    -------
    ndarray of float32, shape (bands, H, W)

    Raises
    ------
    InputError
        Unknown name (the message lists the available ones), unknown parameter, or a
        bad cube.
    MissingDependencyError
        (a :class:`~ras2s.errors.Ras2sError`) when the method's package is missing;
        the message names the extra to install.
    """
    describe(name, **params)  # checks name and parameter names
    return METHODS[name](noisy, sigma=sigma, **params)
