"""Evaluate denoisers on the paper's noise cases: per-image CSV, provenance JSON, Table 2.

:func:`evaluate` runs, for every image, every noise case and every method::

    read -> centre crop -> band subset -> min-max normalise to [0, 1] (the clean reference)
         -> add the case's noise with a derived seed -> each method denoises the noisy cube
         -> MPSNR, MSSIM (paper and gaussian), SAM, ERGAS against the clean reference

and writes three files into ``out_dir``:

``per_image.csv``
    One row per (image, case, method): ``image, case, method, psnr, ssim_paper,
    ssim_gaussian, sam, sam_excluded, ergas, seconds``. Append-only and flushed after
    every row, so an interrupted run loses at most the row in progress; a rerun skips
    the triples already there (``resume=True``).
``results.json``
    Everything: the rows, the means, the failures, and the provenance (versions,
    platform, seeds and their derivation, metric conventions, crop, weights name,
    sha256, card and parameter count, every drawn noise parameter, timestamps).
``table.md``
    Means over images laid out like the paper's Table 2 (rows: Noisy and each method;
    per case PSNR, SSIM, SAM), the SSIM convention stated above the table, the best
    value of every column in bold.

The package has three parts: :mod:`~ras2s.evaluate.protocol` (crop, bands, seeds,
preparing an image), :mod:`~ras2s.evaluate.methods` (what is scored) and
:mod:`~ras2s.evaluate.results` (the files written). Scores come from
:func:`ras2s.metrics.score`.

Protocol decisions
------------------
- **Normalisation.** After the crop and band subset, the clean cube is min-max
  normalised over all its values to [0, 1] (float64, stored as float32). Noise is added
  in that domain and is not clipped, as in the paper.
- **The network sees the noisy cube as it is** (method ``ras2s``, which is
  :func:`ras2s.denoise` with ``normalise="none"``): no second normalisation, which is
  what the authors' test loop does (their noisy test cubes are stored in the normalised
  domain and fed to the network directly). ``ras2s.denoise`` by default min-max
  normalises its input, which is right for a real noisy file but, on a
  synthetic noisy cube, squeezes the values (stripes, impulses and sigma-70 bands widen
  the range) and costs up to 10 dB on ``mixture``; method ``ras2s-denoise`` measures
  that end-user path.
- **Seeds.** The noise of (image, case) is drawn with ``numpy.random.default_rng(s)``,
  ``s = noise_seed(seed, image, case)``: the first 8 bytes (big-endian) of
  ``sha256("ras2s-evaluate:{seed}:{image}:{case}")`` shifted right by one bit (a
  63-bit integer). It depends on nothing else (not on the order of images, cases or
  methods, nor on Python's ``hash``), so a run on any machine draws the same noise.
  Every method of a case gets the same noisy cube.
- **Baselines** (``ras2s.baselines.METHODS``, callables ``(noisy01, *, sigma)``) get
  the true sigma (data units) for the i.i.d. Gaussian cases and ``None`` otherwise.
- **Runtime** is ``time.perf_counter`` around the method call only (no I/O, no noise,
  no metrics), in seconds per cube.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..metrics import score
from ..noise import add_noise
from .methods import BUILTIN_METHODS, Method, resolve_methods
from .protocol import (
    CROP_PRESETS,
    Image,
    check_cases,
    find_images,
    noise_seed,
    parse_bands,
    parse_crop,
    prepare_image,
    run_settings,
)
from .results import CSV_COLUMNS, Recorder, Results, render_table

__all__ = [
    "BUILTIN_METHODS",
    "CROP_PRESETS",
    "CSV_COLUMNS",
    "Results",
    "evaluate",
    "noise_seed",
    "parse_bands",
    "parse_crop",
    "render_table",
]


def evaluate(
    images: Sequence[str | os.PathLike] | Mapping[str, Any],
    cases: Sequence[str],
    methods: Sequence[str],
    *,
    weights: str | os.PathLike = "default",
    seed: int = 0,
    crop: int | str | Sequence[int] | None = None,
    bands: str | slice | Sequence[int] | None = None,
    out_dir: str | os.PathLike,
    resume: bool = True,
    progress: bool = True,
    device: str = "cpu",
    key: str | Mapping[str, str] | None = None,
    layout: str | None = None,
    command: str | None = None,
    precision: str = "auto",
    band_window: int | str | None = "auto",
) -> Results:
    """Score denoisers on noisy versions of clean cubes; write CSV, JSON and a table.

    Parameters
    ----------
    images : sequence of paths, or mapping
        Cube files, PNG-band folders, or folders searched recursively for them (a file
        that cannot be read is a recorded failure, the others go on); or ``{name: array
        (bands, H, W) or path}``. An image's name is its file stem (with its parent
        folders when two stems collide); it names the image in the outputs and enters
        its noise seed.
    cases : sequence of str
        Noise cases of :func:`ras2s.add_noise` (``noniid``, ``stripe``, ``deadline``,
        ``impulse``, ``mixture``, ``iid30``/``gaussian50`` (sigma on the 0-255 scale),
        ``poisson``, ``speckle``, ...), with their default parameters.
    methods : sequence of str
        ``"ras2s"`` (the network on the noisy cube, the paper's protocol),
        ``"ras2s-denoise"`` (:func:`ras2s.denoise`, which re-normalises the noisy cube)
        or a name of ``ras2s.baselines.METHODS``. ``noisy`` is always the first row.
    weights : str or path
        ``"default"``, ``"official"`` or a checkpoint path, for the ras2s methods.
    seed : int
        Master seed; see :func:`noise_seed` for how each noise seed is derived.
    crop : int, (h, w), str or None
        Centre crop: a size, ``"64x48"``, or a preset of the paper's Table 1
        (:data:`CROP_PRESETS`). An image smaller than the crop keeps that axis whole.
    bands : str, slice, sequence of int or None
        Band subset applied after the crop, e.g. ``"0:31"`` (end excluded).
    out_dir : path
        Output folder (created).
    resume : bool
        Keep ``per_image.csv`` and skip the (image, case, method) triples already in it.
        Refused when ``results.json`` there was made with another seed, crop, band subset
        or weights. ``False`` starts afresh and overwrites the three files.
    progress : bool
        tqdm progress bar over the (image, case, method) runs.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` for the network.
    key : str or mapping, optional
        Variable inside container files: one name for all, or ``{image name, file name,
        stem or path: key}`` (others use the automatic choice).
    layout : {"HWB", "BHW"}, optional
        Force the stored layout of every file.
    command : str, optional
        The command line, recorded in ``results.json``.
    precision : {"auto", "fp32", "bf16"}
        Precision of the network (see :mod:`ras2s.precision`); the resolved one is
        recorded with the weights in ``results.json``.
    band_window : "auto", int or None
        Bands per network run (see :func:`ras2s.denoise`); the resolved value is
        recorded with the weights.

    Returns
    -------
    Results
        Rows, means, failures, the table and the provenance.

    Raises
    ------
    InputError
        For an unknown case or method, a bad crop, or a resume against results of
        another configuration (before any work). Problems with one image are recorded
        in ``failures`` instead.

    Examples
    --------
    >>> res = evaluate(["cave/"], ["mixture"], ["ras2s"], weights="official",
    ...                crop="cave", out_dir="results/")  # doctest: +SKIP
    >>> print(res.table)  # doctest: +SKIP
    """
    from tqdm import tqdm

    case_names = check_cases(cases)
    crop_size = parse_crop(crop)
    if bands is not None and not isinstance(bands, str | slice):
        bands = [int(b) for b in bands]
    settings = run_settings(seed, crop, crop_size, bands, device)
    todo = find_images(images)
    resolved, method_info, weights_info = resolve_methods(
        methods, weights, device, precision, band_window
    )
    record = Recorder(
        out_dir,
        settings=settings,
        cases=case_names,
        methods=["noisy", *resolved],
        images=todo,
        method_info=method_info,
        weights_info=weights_info,
        resume=resume,
        command=command,
    )
    total = len(todo) * len(case_names) * len(record.methods)
    bar = tqdm(total=total, desc="evaluate", unit="run", disable=not progress)
    try:
        for image in todo:
            bar.set_postfix_str(image.name)
            prepare = (crop_size, bands, key, layout)
            _evaluate_image(image, prepare, resolved, record, bar, seed=seed)
    finally:
        bar.close()
        record.close()
    unusable = [f for f in record.failures if f["stage"] == "prepare"]
    if not record.rows and len(unusable) == len(todo):  # nothing could be read: no results
        record.discard()
        raise InputError(f"no usable input: {unusable[0]['image']}: {unusable[0]['error']}")
    return record.finish()


def _evaluate_image(
    image: Image, prepare: tuple, methods: dict[str, Method], record: Recorder, bar, *, seed: int
) -> None:
    """Every pending (case, method) of one image; failures are recorded, not raised."""
    per_image = len(record.cases) * len(record.methods)
    pending = record.pending(image.name)
    if not pending:
        bar.update(per_image)
        return
    try:
        clean, info = prepare_image(image, *prepare)
    except Exception as err:  # noqa: BLE001 - recorded, the other images go on
        record.fail(image, "prepare", err)
        bar.update(per_image)
        return
    record.image_info[image.name] = info
    record.noise_info.setdefault(image.name, {})
    for case in record.cases:
        todo = [m for m in record.methods if (case, m) in pending]
        bar.update(len(record.methods) - len(todo))
        if todo:
            _evaluate_case(image, case, clean, todo, methods, record, bar, seed=seed)
    record.save(None)


def _evaluate_case(
    image: Image,
    case: str,
    clean: np.ndarray,
    todo: list[str],
    methods: dict[str, Method],
    record: Recorder,
    bar,
    *,
    seed: int,
) -> None:
    """Add the case's noise to ``clean`` once and score every method of ``todo`` on it."""
    case_seed = noise_seed(seed, image.name, case)
    try:
        noisy, params = add_noise(clean, case, rng=case_seed, return_params=True)
    except Exception as err:  # noqa: BLE001
        record.fail(image, "noise", err, case=case)
        bar.update(len(todo))
        return
    record.noise_info[image.name][case] = {**params, "seed": case_seed}
    for method in todo:
        try:
            scores = _score_method(methods.get(method), noisy, params, clean, method)
        except Exception as err:  # noqa: BLE001
            stage = "method" if method != "noisy" else "metrics"
            record.fail(image, stage, err, case=case, method=method)
        else:
            record.add({"image": image.name, "case": case, "method": method, **scores})
        bar.update()


def _score_method(
    run: Method | None, noisy: np.ndarray, params: dict[str, Any], clean: np.ndarray, name: str
) -> dict[str, float]:
    """Scores and run time of one method (``run=None``: the noisy input itself)."""
    if run is None:
        return {**score(noisy, clean), "seconds": 0.0}
    tic = time.perf_counter()
    estimate = run(noisy.copy(), params)
    seconds = time.perf_counter() - tic
    estimate = np.asarray(estimate)
    if estimate.shape != clean.shape:
        raise InputError(f"method {name!r} returned shape {estimate.shape}, expected {clean.shape}")
    return {**score(estimate, clean), "seconds": seconds}
