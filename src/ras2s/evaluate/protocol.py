"""The evaluation protocol: crop presets, band subsets, seeds, and how an image is prepared.

See :mod:`ras2s.evaluate` for the protocol decisions (normalisation, seeds, baselines).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cube import centre_box, normalise
from ..errors import InputError
from ..io import FORMATS, expand_inputs, read_cube, sha256_array, sha256_file
from ..noise import resolve_case

__all__ = [
    "CROP_PRESETS",
    "METRIC_CONVENTIONS",
    "NORMALISATION",
    "SEED_DERIVATION",
    "Image",
    "check_cases",
    "find_images",
    "noise_seed",
    "parse_bands",
    "parse_crop",
    "prepare_image",
    "run_settings",
]

logger = logging.getLogger("ras2s.evaluate")

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


def run_settings(
    seed: int,
    crop: Any,
    crop_size: tuple[int, int] | None,
    bands: str | slice | list[int] | None,
    device: Any,
) -> dict[str, Any]:
    """The settings of a run as ``results.json`` records them (seed, crop, bands, ...)."""
    if isinstance(bands, slice):
        bands = f"{bands.start}:{bands.stop}:{bands.step}"
    return {
        "seed": int(seed),
        "crop": list(crop_size) if crop_size else None,
        "crop_requested": crop if isinstance(crop, str | int | type(None)) else list(crop),
        "bands": bands,
        "normalisation": NORMALISATION,
        "device": str(device),
    }


def check_cases(cases: Sequence[str]) -> list[str]:
    """Case names, lower-cased; :class:`InputError` for none, an unknown or a repeated one."""
    names = [str(c).strip().lower() for c in cases if str(c).strip()]
    if not names:
        raise InputError("no noise cases given")
    for case in names:
        resolve_case(case)  # unknown case: InputError listing the known ones
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise InputError(f"cases listed twice: {', '.join(dupes)}")
    return names


@dataclass(frozen=True)
class Image:
    """One image to evaluate: its name (in the outputs and the seed), a path or an array."""

    name: str
    path: Path | None
    array: np.ndarray | None = None


def find_images(images: Sequence[str | os.PathLike] | Mapping[str, Any]) -> list[Image]:
    """Files, folders (searched recursively for cube files) or ``{name: array|path}``."""
    if isinstance(images, Mapping):
        return [
            Image(str(name), Path(value))
            if isinstance(value, str | os.PathLike)
            else Image(str(name), None, np.asarray(value))
            for name, value in images.items()
        ]
    if isinstance(images, str | os.PathLike):
        images = [images]
    missing = [str(p) for p in images if not Path(p).exists()]
    if missing:  # a typo, found before any work (and before any results folder exists)
        raise InputError(f"{missing[0]}: no such file or folder")
    paths = expand_inputs(images, recursive=True)
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
    return [Image(n, p) for n, p in zip(names, paths, strict=True)]


def _key_for(image: Image, key: str | Mapping[str, str] | None) -> str | None:
    if key is None or isinstance(key, str):
        return key
    candidates = [image.name]
    if image.path is not None:
        candidates += [image.path.name, image.path.stem, str(image.path)]
    for c in candidates:
        if c in key:
            return key[c]
    return None


def prepare_image(
    image: Image,
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
            "sha256": sha256_array(data),
            "key": None,
            "layout": "BHW",
        }
    else:
        cube = read_cube(image.path, key=_key_for(image, key), layout=layout)
        data = cube.data
        info = {
            "path": str(image.path),
            "sha256": sha256_file(image.path),
            "format": cube.format,
            "key": cube.key,
            "layout": cube.layout,
        }
    info.update({"shape_read": list(data.shape), "dtype": str(data.dtype)})
    box = centre_box(data.shape, crop_size)
    cropped = data[:, box[0] : box[0] + box[2], box[1] : box[1] + box[3]]
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
    clean, lo, hi = normalise(cropped, source=image.name)
    info.update(
        {
            "crop_box": {"top": box[0], "left": box[1], "height": box[2], "width": box[3]},
            "bands": index.tolist() if index is not None else None,
            "shape": list(clean.shape),
            "normalisation": {"lo": lo, "hi": hi},
        }
    )
    return clean, info
