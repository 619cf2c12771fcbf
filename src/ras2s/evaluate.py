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

Protocol decisions
------------------
- **Normalisation.** After the crop and band subset, the clean cube is min-max
  normalised over all its values to [0, 1] (float64, stored as float32). Noise is added
  in that domain and is not clipped, as in the paper.
- **The network sees the noisy cube as it is** (method ``ras2s``): no second
  normalisation, which is what the authors' test loop does (their noisy test cubes are
  stored in the normalised domain and fed to the network directly). ``ras2s.denoise``
  instead min-max normalises its input, which is right for a real noisy file but, on a
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

import csv
import datetime as _dt
import hashlib
import importlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, Ras2sError
from .io import write_atomically

__all__ = [
    "BUILTIN_METHODS",
    "CROP_PRESETS",
    "CSV_COLUMNS",
    "Results",
    "center_crop",
    "evaluate",
    "noise_seed",
    "parse_bands",
    "parse_crop",
    "render_table",
]

logger = logging.getLogger(__name__)

#: Centre-crop sizes of the paper's test sets (supplementary Table 1), by name.
CROP_PRESETS: dict[str, int] = {
    "icvl": 512,
    "cave": 512,
    "kaist": 2048,
    "pavia": 384,
    "wdc": 256,
    "urban": 224,
    "realhsi": 512,
}

CSV_COLUMNS: tuple[str, ...] = (
    "image",
    "case",
    "method",
    "psnr",
    "ssim_paper",
    "ssim_gaussian",
    "sam",
    "sam_excluded",
    "ergas",
    "seconds",
)
_METRICS = ("psnr", "ssim_paper", "ssim_gaussian", "sam", "sam_excluded", "ergas", "seconds")

#: Methods that need no ``ras2s.baselines``: the network as the paper tests it, and
#: the end-user :func:`ras2s.denoise` path (which re-normalises the noisy cube).
BUILTIN_METHODS: tuple[str, ...] = ("ras2s", "ras2s-denoise")

SEED_DERIVATION = (
    "noise seed of (image, case) = int.from_bytes(sha256(f'ras2s-evaluate:{seed}:{image}:"
    "{case}'.encode()).digest()[:8], 'big') >> 1, passed to numpy.random.default_rng; "
    "image = the image's name in per_image.csv"
)
METRIC_CONVENTIONS: dict[str, str] = {
    "psnr": "MPSNR: mean over bands of 10 log10(1 / MSE_band), data range 1, no clipping",
    "ssim_paper": "MSSIM, 'paper' convention: one whole-band SSIM per band (no window, "
    "cov ddof=1, var ddof=0, C1=0.01^2, C2=0.03^2), the authors' test loop; the paper's "
    "tables use it",
    "ssim_gaussian": "MSSIM, 'gaussian' convention: Wang et al. 2004, 11-tap Gaussian "
    "window sigma 1.5, population covariance, border cropped (scikit-image / MATLAB ssim)",
    "sam": "mean spectral angle in radians, 'ras2s' convention: pixels where either "
    "spectrum has zero norm are excluded (counted in sam_excluded)",
    "ergas": "100 sqrt(mean_b MSE_b / mean(y_b)^2), the authors' form (ratio 1); NaN when a "
    "reference band has mean 0",
    "seconds": "time.perf_counter around the method call only (0 for noisy)",
}
NORMALISATION = (
    "after crop and band subset: (x - min) / (max - min) over the whole cube, float64 -> "
    "float32; noise added in that domain, not clipped"
)

Method = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


# ------------------------------------------------------------------------ helpers
def noise_seed(seed: int, image: str, case: str) -> int:
    """The seed of the noise of ``(image, case)`` in a run with master ``seed``.

    ``int.from_bytes(sha256(f"ras2s-evaluate:{seed}:{image}:{case}").digest()[:8],
    "big") >> 1``: a 63-bit integer that depends on these three values only.

    Examples
    --------
    >>> noise_seed(0, "cloth", "mixture") == noise_seed(0, "cloth", "mixture")
    True
    >>> noise_seed(0, "cloth", "mixture") != noise_seed(1, "cloth", "mixture")
    True
    """
    text = f"ras2s-evaluate:{int(seed)}:{image}:{case}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def parse_crop(crop: int | str | Sequence[int] | None) -> tuple[int, int] | None:
    """``512``, ``"512"``, ``"64x48"``, ``(64, 48)`` or a preset name -> ``(h, w)``.

    Presets (:data:`CROP_PRESETS`, the paper's Table 1): icvl 512, cave 512, kaist 2048,
    pavia 384, wdc 256, urban 224, realhsi 512. ``None`` (or ``"none"``): no crop.

    Examples
    --------
    >>> parse_crop("wdc"), parse_crop("64x48"), parse_crop(32)
    ((256, 256), (64, 48), (32, 32))
    """
    if crop is None:
        return None
    if isinstance(crop, str):
        text = crop.strip().lower()
        if text in ("", "none"):
            return None
        if text in CROP_PRESETS:
            return CROP_PRESETS[text], CROP_PRESETS[text]
        parts = text.replace("*", "x").split("x")
        try:
            sizes = [int(p) for p in parts]
        except ValueError:
            raise InputError(
                f"crop {crop!r} is not a size (512, 64x48) nor a preset "
                f"({', '.join(f'{k}={v}' for k, v in CROP_PRESETS.items())})"
            ) from None
    elif isinstance(crop, int | np.integer) and not isinstance(crop, bool):
        sizes = [int(crop)]
    else:
        sizes = [int(c) for c in crop]
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise InputError(f"crop must be one or two sizes >= 1 (h, w), got {crop!r}")
    return sizes[0], sizes[1]


def parse_bands(bands: str | slice | Sequence[int] | None, n_bands: int) -> np.ndarray | None:
    """Band indices to keep, from text, a slice or a sequence of ints.

    ``"0:31"`` (a Python slice, end excluded), ``"0,5,9"``, a slice or a sequence of
    ints; ``None`` keeps all.

    Raises
    ------
    InputError
        For text that is neither form, an index outside ``[0, n_bands)`` or an empty
        selection.

    Examples
    --------
    >>> parse_bands("0:4", 31).tolist(), parse_bands("1,3", 31).tolist()
    ([0, 1, 2, 3], [1, 3])
    """
    if bands is None:
        return None
    if isinstance(bands, str):
        text = bands.strip()
        try:
            if ":" in text:
                parts = [int(p) if p.strip() else None for p in text.split(":")]
                if len(parts) > 3:
                    raise ValueError
                bands = slice(*parts)
            else:
                bands = [int(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise InputError(
                f"bands {bands!r} is neither a slice like 0:31 nor a list like 0,5,9"
            ) from None
    if isinstance(bands, slice):
        index = np.arange(n_bands)[bands]
    else:
        index = np.asarray(list(bands), dtype=np.int64).reshape(-1)
        bad = index[(index < 0) | (index >= n_bands)]
        if bad.size:
            raise InputError(f"band indices {bad.tolist()} are outside the cube's {n_bands} bands")
    if index.size == 0:
        raise InputError(f"the band selection {bands!r} keeps no band of {n_bands}")
    return index


def center_crop(
    cube: np.ndarray, size: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Centre crop of a ``(bands, H, W)`` cube: ``(view, (top, left, h, w))``.

    ``top = (H - h) // 2``, ``left = (W - w) // 2``. A crop larger than the image along
    an axis keeps that whole axis (the box says what was used).
    """
    _, height, width = cube.shape
    if size is None:
        return cube, (0, 0, height, width)
    h, w = min(size[0], height), min(size[1], width)
    top, left = (height - h) // 2, (width - w) // 2
    return cube[:, top : top + h, left : left + w], (top, left, h, w)


def _normalise(cube: np.ndarray, source: str) -> tuple[np.ndarray, float, float]:
    data = np.asarray(cube, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{source}: the cube {cube.shape} holds NaN or Inf values")
    lo, hi = float(data.min()), float(data.max())
    if hi == lo:
        raise InputError(f"{source}: the cube {cube.shape} is constant ({lo}); nothing to score")
    return ((data - lo) / (hi - lo)).astype(np.float32), lo, hi


def _sha256_path(path: Path) -> str | None:
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        return None
    for p in files:
        if path.is_dir():
            digest.update(p.name.encode() + b"\0")
        with open(p, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- images
@dataclass(frozen=True)
class _Image:
    name: str
    path: Path | None
    array: np.ndarray | None = None


def _expand(images: Sequence[str | os.PathLike] | Mapping[str, Any]) -> list[_Image]:
    """Files, folders (searched recursively for cube files) or ``{name: array|path}``."""
    from .io import FORMATS, is_png_cube_folder

    if isinstance(images, Mapping):
        found = []
        for name, value in images.items():
            if isinstance(value, str | os.PathLike):
                found.append(_Image(str(name), Path(value)))
            else:
                found.append(_Image(str(name), None, np.asarray(value)))
        return found
    if isinstance(images, str | os.PathLike):
        images = [images]
    paths: list[Path] = []
    for item in images:
        path = Path(item)
        if path.is_dir() and not is_png_cube_folder(path):
            inside = sorted(
                p
                for p in path.rglob("*")
                if not any(part.startswith(".") for part in p.relative_to(path).parts)
                and (
                    (p.is_file() and p.suffix.lower() in FORMATS)
                    or (p.is_dir() and is_png_cube_folder(p))
                )
            )
            if not inside:
                raise InputError(f"{path}: folder holds no cube files ({', '.join(FORMATS)})")
            paths.extend(inside)
        else:
            paths.append(path)
    if not paths:
        raise InputError("no images to evaluate")
    stems = [p.stem if p.suffix.lower() in FORMATS else p.name for p in paths]
    names = []
    for path, stem in zip(paths, stems, strict=True):
        if stems.count(stem) > 1:  # disambiguate by the parent folders
            stem = "/".join([*path.parent.parts[-2:], stem])
        names.append(stem)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"several inputs have the same name: {', '.join(dupes)}")
    return [_Image(n, p) for n, p in zip(names, paths, strict=True)]


def _key_for(image: _Image, key: str | Mapping[str, str] | None) -> str | None:
    if key is None or isinstance(key, str):
        return key
    candidates = [image.name]
    if image.path is not None:
        candidates += [image.path.name, image.path.stem, str(image.path)]
    for c in candidates:
        if c in key:
            return key[c]
    return None


# ---------------------------------------------------------------------- methods
def run_ras2s(noisy01: np.ndarray, model: Any, *, device: Any = "cpu") -> np.ndarray:
    """The network on a cube already in the normalised domain (the paper's protocol).

    Same tiling as :func:`ras2s.denoise` (tile size from its 2 GiB memory budget, so a
    test crop is one tile) but no min-max normalisation of the noisy input.
    """
    import torch

    from .inference import DEFAULT_MAX_MEMORY, DEFAULT_OVERLAP, choose_tile, resolve_device
    from .tiling import run_tiled

    torch_device = resolve_device(device)
    bands, height, width = noisy01.shape
    channels = getattr(getattr(model, "config", None), "channels", 14)
    tile = choose_tile(
        bands,
        height,
        width,
        max_memory=DEFAULT_MAX_MEMORY,
        fixed_bytes=2 * noisy01.nbytes + 4 * height * width,
        channels=channels,
    )
    overlap = min(DEFAULT_OVERLAP, max(0, tile // 4), max(0, min(tile, height, width) - 1))

    def network(window: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(window).to(torch_device).unsqueeze(0)
            return model(x)[0].float().cpu().numpy()

    return run_tiled(noisy01, network, tile=tile, overlap=overlap)


def _baselines() -> dict[str, Callable[..., np.ndarray]]:
    try:
        module = importlib.import_module("ras2s.baselines")
    except ImportError as err:
        raise InputError(
            f"the baseline methods (ras2s.baselines) could not be imported ({err}); "
            f"available methods: {', '.join(BUILTIN_METHODS)}"
        ) from None
    return dict(getattr(module, "METHODS", {}))


def _resolve_methods(
    methods: Sequence[str], weights: str | os.PathLike, device: Any
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
        from .inference import resolve_device
        from .model import count_parameters
        from .weights import load_model, resolve, sha256_of

        torch_device = resolve_device(device)  # InputError when CUDA is asked but absent
        path = resolve(weights)
        model = load_model(weights, torch_device)
        weights_info = {
            "name": str(weights),
            "path": str(path),
            "sha256": sha256_of(path),
            "card": model.card,
            "config": model.config.to_dict(),
            "parameters": count_parameters(model),
        }
        device = torch_device
    for name in names:
        if name == "ras2s":
            resolved[name] = lambda noisy, params, m=model: run_ras2s(noisy, m, device=device)
            info[name] = {
                "kind": "network, input in the normalised domain (paper protocol)",
                "parameters": weights_info["parameters"],
            }
        elif name == "ras2s-denoise":
            from .inference import denoise

            resolved[name] = lambda noisy, params, m=model: denoise(noisy, model=m, device=device)
            info[name] = {
                "kind": "ras2s.denoise (min-max normalises the noisy cube first)",
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


# ---------------------------------------------------------------------- metrics
def score(estimate: np.ndarray, clean: np.ndarray) -> dict[str, float | int]:
    """All metrics of one estimate against the clean reference (both in [0, 1] units)."""
    from . import metrics

    sam_value, excluded = metrics.sam(estimate, clean, return_excluded=True)
    try:
        ergas_value = metrics.ergas(estimate, clean)
    except InputError:  # a reference band of mean 0: ERGAS is undefined
        ergas_value = math.nan
    return {
        "psnr": metrics.mpsnr(estimate, clean, data_range=1.0),
        "ssim_paper": metrics.mssim(estimate, clean, convention="paper"),
        "ssim_gaussian": metrics.mssim(estimate, clean, convention="gaussian"),
        "sam": float(sam_value),
        "sam_excluded": int(excluded),
        "ergas": ergas_value,
    }


# ---------------------------------------------------------------------- results
@dataclass
class Results:
    """What :func:`evaluate` produced (also written to ``out_dir``).

    Attributes
    ----------
    out_dir : pathlib.Path
        Folder holding ``per_image.csv``, ``results.json`` and ``table.md``.
    rows : list of dict
        The rows of this evaluation (including ones done by an earlier run), CSV columns.
    failures : list of dict
        ``image``, ``case``, ``method`` (None when not specific), ``stage`` and ``error``.
    means : dict
        ``{(case, method): {metric: mean over images, "n": number of images}}``.
    table : str
        The Markdown of ``table.md``.
    provenance : dict
        The whole ``results.json``.
    """

    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    means: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    table: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def csv_path(self) -> Path:
        """``out_dir / "per_image.csv"``."""
        return self.out_dir / "per_image.csv"

    @property
    def json_path(self) -> Path:
        """``out_dir / "results.json"``."""
        return self.out_dir / "results.json"

    @property
    def table_path(self) -> Path:
        """``out_dir / "table.md"``."""
        return self.out_dir / "table.md"


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise InputError(
                f"{path}: columns {reader.fieldnames} are not those of ras2s evaluate "
                f"({', '.join(CSV_COLUMNS)}); use another output folder or --no-resume"
            )
        rows = []
        for raw in reader:
            if None in raw or any(v is None for v in raw.values()):
                logger.warning("%s: skipping a truncated row %s", path, raw)
                continue
            row: dict[str, Any] = {k: raw[k] for k in ("image", "case", "method")}
            try:
                for k in _METRICS:
                    row[k] = int(raw[k]) if k == "sam_excluded" else float(raw[k])
            except ValueError:
                logger.warning("%s: skipping a malformed row %s", path, raw)
                continue
            rows.append(row)
    return rows


def _format(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def _means(
    rows: list[dict[str, Any]], cases: Sequence[str], methods: Sequence[str]
) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for case in cases:
        for method in methods:
            sel = [r for r in rows if r["case"] == case and r["method"] == method]
            if not sel:
                continue
            entry: dict[str, float] = {"n": len(sel)}
            for k in _METRICS:
                entry[k] = float(np.mean([r[k] for r in sel]))
            out[(case, method)] = entry
    return out


_TABLE_COLUMNS = (
    ("psnr", "PSNR↑", 2, max),
    ("ssim_paper", "SSIM↑", 4, max),
    ("sam", "SAM↓", 4, min),
)


def render_table(
    means: Mapping[tuple[str, str], Mapping[str, float]],
    cases: Sequence[str],
    methods: Sequence[str],
    *,
    n_images: int | None = None,
    caption: str = "",
) -> str:
    """Markdown table of means in the paper's Table 2 layout.

    Rows: ``Noisy`` then each method; per case three columns, PSNR (dB), SSIM (paper
    convention) and SAM (radians). The best value of every column (highest PSNR and SSIM,
    lowest SAM, compared as printed; ties all bold; the Noisy row competes too) is bold.
    A mean over fewer images than ``n_images`` is marked ``*``.
    """
    rows = ["noisy", *[m for m in methods if m != "noisy"]]
    lines = []
    if caption:
        lines += [caption, ""]
    lines.append(
        "SSIM convention: `paper` (one whole-band SSIM per band, no window: the authors' "
        "test loop, as in the paper's tables). Gaussian-window SSIM (Wang et al. 2004) is "
        "in per_image.csv and results.json. PSNR in dB (data range 1), SAM in radians. "
        "Best value per column in bold."
    )
    lines.append("")
    header = ["Methods"] + [
        f"{case} {label}" for case in cases for _, label, _, _ in _TABLE_COLUMNS
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|" + "---:|" * (len(header) - 1))
    cells: dict[tuple[str, str, str], str] = {}
    best: dict[tuple[str, str], str] = {}
    partial = False
    for case in cases:
        for metric, _, digits, pick in _TABLE_COLUMNS:
            shown = {}
            for method in rows:
                entry = means.get((case, method))
                if entry is None or not math.isfinite(entry[metric]):
                    continue
                shown[method] = f"{entry[metric]:.{digits}f}"
            if shown:
                best[(case, metric)] = pick(shown.values(), key=float)
            for method, text in shown.items():
                mark = ""
                if n_images is not None and means[(case, method)]["n"] < n_images:
                    mark, partial = "*", True
                bold = text == best[(case, metric)]
                cells[(case, metric, method)] = (f"**{text}**" if bold else text) + mark
    for method in rows:
        label = "Noisy" if method == "noisy" else method
        values = [
            cells.get((case, metric, method), "–")
            for case in cases
            for metric, *_ in _TABLE_COLUMNS
        ]
        lines.append("| " + " | ".join([label, *values]) + " |")
    if partial:
        note = f"\\* mean over fewer than {n_images} images (see `failures` in results.json)."
        lines += ["", note]
    seconds = [
        (m, np.mean([means[(c, m)]["seconds"] for c in cases if (c, m) in means]))
        for m in rows[1:]
        if any((c, m) in means for c in cases)
    ]
    if seconds:
        timing = ", ".join(f"{m} {s:.3g} s" for m, s in seconds)
        lines += ["", f"Mean runtime per cube (method only): {timing}."]
    return "\n".join(lines) + "\n"


def _write_text_atomic(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _strict_json(value: Any) -> Any:
    """NaN and infinities -> None (null), so results.json is strict JSON."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def _versions() -> dict[str, str]:
    from . import __version__

    found = {"ras2s": __version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    for name in ("torch", "scipy"):
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError:  # pragma: no cover - both are dependencies
            found[name] = "absent"
    return found


# ---------------------------------------------------------------------- evaluate
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

    from .io import read_cube
    from .noise import _resolve_case, add_noise

    started = _utc_now()
    case_names = [str(c).strip().lower() for c in cases if str(c).strip()]
    if not case_names:
        raise InputError("no noise cases given")
    for case in case_names:
        _resolve_case(case)  # unknown case: InputError listing the known ones
    dupes = sorted({c for c in case_names if case_names.count(c) > 1})
    if dupes:
        raise InputError(f"cases listed twice: {', '.join(dupes)}")
    crop_size = parse_crop(crop)
    if bands is not None and not isinstance(bands, str | slice):
        bands = [int(b) for b in bands]
    settings = {
        "seed": int(seed),
        "crop": list(crop_size) if crop_size else None,
        "crop_requested": crop if isinstance(crop, str | int | type(None)) else list(crop),
        "bands": bands
        if not isinstance(bands, slice)
        else f"{bands.start}:{bands.stop}:{bands.step}",
        "normalisation": NORMALISATION,
    }
    todo = _expand(images)
    resolved, method_info, weights_info = _resolve_methods(methods, weights, device)
    method_names = ["noisy", *resolved]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = Results(out_dir=out)
    previous: dict[str, Any] = {}
    if resume and result.json_path.exists():
        try:
            previous = json.loads(result.json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        old = previous.get("settings", {})
        for name in ("seed", "crop", "bands"):
            if name in old and old[name] != settings[name]:
                raise InputError(
                    f"{out} holds results made with {name}={old[name]!r}, not {settings[name]!r}; "
                    "use another output folder or --no-resume"
                )
        old_sha = (previous.get("weights") or {}).get("sha256")
        if old_sha and weights_info and old_sha != weights_info["sha256"]:
            raise InputError(
                f"{out} holds results made with other weights (sha256 {old_sha[:12]}...); "
                "use another output folder or --no-resume"
            )
    if not resume:
        for path in (result.csv_path, result.json_path, result.table_path):
            if path.exists():
                path.unlink()

    done_rows = _read_rows(result.csv_path) if result.csv_path.exists() else []
    done = {(r["image"], r["case"], r["method"]) for r in done_rows}
    image_info: dict[str, Any] = dict(previous.get("images", {}))
    noise_info: dict[str, Any] = dict(previous.get("noise", {}))
    failures: list[dict[str, Any]] = []

    def fail(image: _Image, stage: str, err: BaseException, case=None, method=None) -> None:
        text = str(err) if isinstance(err, Ras2sError) else f"{type(err).__name__}: {err}"
        failures.append(
            {
                "image": image.name,
                "path": str(image.path) if image.path else None,
                "case": case,
                "method": method,
                "stage": stage,
                "error": text,
            }
        )
        where = "/".join(x for x in (image.name, case, method) if x)
        logger.error("evaluate: %s failed at %s: %s", where, stage, text)

    new_file = not result.csv_path.exists()
    handle = open(result.csv_path, "a", newline="", encoding="utf-8")  # noqa: SIM115
    writer = csv.writer(handle)
    if new_file:
        writer.writerow(CSV_COLUMNS)
        handle.flush()

    def provenance(finished: str | None) -> dict[str, Any]:
        names = {i.name for i in todo}
        rows = [
            r
            for r in done_rows
            if r["image"] in names and r["case"] in case_names and r["method"] in method_names
        ]
        means = _means(rows, case_names, method_names)
        result.rows, result.means, result.failures = rows, means, failures
        return {
            "versions": _versions(),
            "platform": {
                "system": platform.platform(),
                "machine": platform.machine(),
                "processor": platform.processor(),
                "torch_threads": _torch_threads(),
            },
            "command": command,
            "started": started,
            "finished": finished,
            "settings": {
                **settings,
                "device": str(device),
                "cases": case_names,
                "methods": method_names,
                "crop_presets": CROP_PRESETS,
                "seed_derivation": SEED_DERIVATION,
            },
            "metric_conventions": METRIC_CONVENTIONS,
            "weights": weights_info,
            "methods": method_info,
            "images": {n: image_info[n] for n in sorted(image_info) if n in names},
            "noise": {n: noise_info[n] for n in sorted(noise_info) if n in names},
            "rows": rows,
            "means": [{"case": c, "method": m, **v} for (c, m), v in means.items()],
            "failures": failures,
        }

    earlier = previous.get("runs")
    if earlier is None and previous.get("started"):  # written before the history existed
        earlier = [{k: previous.get(k) for k in ("started", "command", "finished")}]
    runs = [*(earlier or []), {"started": started, "command": command}]

    def save(finished: str | None) -> None:
        runs[-1]["finished"] = finished
        data = _strict_json({**provenance(finished), "runs": runs})
        _write_text_atomic(result.json_path, json.dumps(data, indent=1, default=_json_default))
        result.provenance = data

    total = len(todo) * len(case_names) * len(method_names)
    bar = tqdm(total=total, desc="evaluate", unit="run", disable=not progress)
    try:
        for image in todo:
            pending = {
                (c, m) for c in case_names for m in method_names if (image.name, c, m) not in done
            }
            if not pending:
                bar.update(len(case_names) * len(method_names))
                continue
            bar.set_postfix_str(image.name)
            try:
                clean, info = _prepare(image, read_cube, crop_size, bands, key, layout)
            except Exception as err:  # noqa: BLE001 - recorded, the other images go on
                fail(image, "prepare", err)
                bar.update(len(case_names) * len(method_names))
                continue
            image_info[image.name] = info
            noise_info.setdefault(image.name, {})
            for case in case_names:
                todo_methods = [m for m in method_names if (case, m) in pending]
                if not todo_methods:
                    bar.update(len(method_names))
                    continue
                case_seed = noise_seed(seed, image.name, case)
                try:
                    noisy, params = add_noise(clean, case, rng=case_seed, return_params=True)
                except Exception as err:  # noqa: BLE001
                    fail(image, "noise", err, case=case)
                    bar.update(len(method_names))
                    continue
                noise_info[image.name][case] = {**params, "seed": case_seed}
                bar.update(len(method_names) - len(todo_methods))
                for method in todo_methods:
                    try:
                        if method == "noisy":
                            estimate, seconds = noisy, 0.0
                        else:
                            tic = time.perf_counter()
                            estimate = resolved[method](noisy.copy(), params)
                            seconds = time.perf_counter() - tic
                            estimate = np.asarray(estimate)
                            if estimate.shape != clean.shape:
                                raise InputError(
                                    f"method {method!r} returned shape {estimate.shape}, "
                                    f"expected {clean.shape}"
                                )
                        row = {
                            "image": image.name,
                            "case": case,
                            "method": method,
                            **score(estimate, clean),
                            "seconds": seconds,
                        }
                    except Exception as err:  # noqa: BLE001
                        fail(
                            image,
                            "method" if method != "noisy" else "metrics",
                            err,
                            case=case,
                            method=method,
                        )
                        bar.update()
                        continue
                    writer.writerow([_format(row[c]) for c in CSV_COLUMNS])
                    handle.flush()
                    done_rows.append(row)
                    done.add((image.name, case, method))
                    bar.update()
            save(None)
    finally:
        bar.close()
        handle.close()
    save(_utc_now())
    n_images = len({r["image"] for r in result.rows if r["method"] == "noisy"})
    crop_text = "x".join(map(str, crop_size)) if crop_size else "none"
    bands_text = f", bands {settings['bands']}" if bands is not None else ""
    weights_text = weights_info["name"] if weights_info else "-"
    caption = (
        f"Means over {n_images} image(s); centre crop {crop_text}{bands_text}; "
        f"seed {seed}; weights {weights_text}."
    )
    result.table = render_table(
        result.means, case_names, method_names, n_images=n_images, caption=caption
    )
    unscored = [f for f in failures if f["stage"] == "prepare"]
    if unscored:
        listed = "; ".join(f"{f['image']} ({f['error']})" for f in unscored)
        result.table += f"\nNot scored (see `failures` in results.json): {listed}\n"
    _write_text_atomic(result.table_path, result.table)
    return result


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch.get_num_threads()


def _prepare(
    image: _Image,
    read_cube: Callable[..., Any],
    crop_size: tuple[int, int] | None,
    bands: str | slice | Sequence[int] | None,
    key: str | Mapping[str, str] | None,
    layout: str | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read, crop, select bands and normalise one image: ``(clean01, provenance)``."""
    if image.array is not None:
        data = image.array
        if data.ndim != 3:
            raise InputError(f"{image.name}: array of shape {data.shape} is not (bands, H, W)")
        info: dict[str, Any] = {
            "path": None,
            "sha256": hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest(),
            "key": None,
            "layout": "BHW",
        }
    else:
        cube = read_cube(image.path, key=_key_for(image, key), layout=layout)
        data = cube.data
        info = {
            "path": str(image.path),
            "sha256": _sha256_path(image.path),
            "format": cube.format,
            "key": cube.key,
            "layout": cube.layout,
        }
    info.update({"shape_read": list(data.shape), "dtype": str(data.dtype)})
    cropped, box = center_crop(data, crop_size)
    if crop_size is not None and (box[2], box[3]) != crop_size:
        logger.warning(
            "evaluate: %s is %dx%d, smaller than the crop %dx%d; kept %dx%d",
            image.name,
            data.shape[1],
            data.shape[2],
            *crop_size,
            box[2],
            box[3],
        )
    index = parse_bands(bands, data.shape[0])
    if index is not None:
        cropped = cropped[index]
    clean, lo, hi = _normalise(cropped, image.name)
    info.update(
        {
            "crop_box": {"top": box[0], "left": box[1], "height": box[2], "width": box[3]},
            "bands": index.tolist() if index is not None else None,
            "shape": list(clean.shape),
            "normalisation": {"lo": lo, "hi": hi},
        }
    )
    return clean, info
