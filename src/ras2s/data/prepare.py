"""``ras2s prepare``: clean cubes -> normalised patches on disk + ``manifest.json``.

Per source cube: read bands first, min-max normalise the whole cube to [0, 1] (as the
paper), apply the band rule, centre crop to ``crop`` (the whole image when smaller;
the size used is recorded), then cut patches at every scale (see
:mod:`ras2s.data.patches`). Patches of the training and validation images go to
``train.npy`` and ``val.npy``: raw float32 ``(n, bands, patch, patch)`` arrays in
``.npy`` format, written image by image (never held whole in memory) and read back with
``np.load(path, mmap_mode="r")``. The split is by source file, never by patch.

Band rules (a batch needs one band count):

``error`` (default)
    Every cube must have the same number of bands (equal to ``bands`` when given);
    otherwise an error lists the files and their counts.
``select``
    ``bands`` evenly spaced bands of every cube (``round(linspace(0, B - 1, bands))``).
``window``
    Windows of ``bands`` consecutive bands: ``ceil(B / bands)`` windows per cube at
    evenly spaced offsets ``round(linspace(0, B - bands, k))`` (overlapping when
    ``B`` is not a multiple). Each window is patched like an image of its own; all
    windows of a file stay in that file's split.

A cube with fewer than ``bands`` bands is an error under every rule.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..cube import centre_crop, normalise
from ..errors import InputError, OutputError, Ras2sError
from ..io import FORMATS, atomic_path, find_cubes, read_cube, sha256_file, write_text_atomically
from .patches import extract_patches, patch_count

BAND_RULES = ("error", "select", "window")
_HEADER_BYTES = 4096


@dataclass(frozen=True)
class PrepareConfig:
    """Options of :func:`prepare` (see the module docstring)."""

    crop: int | None = 1024
    patch: int = 64
    scales: tuple[float, ...] = (1.0, 0.5, 0.25)
    strides: tuple[int, ...] = (64, 32, 32)
    val_images: int = 0
    val_list: tuple[str, ...] = ()
    bands: int | None = None
    band_rule: str = "error"
    key: str | None = None
    layout: str | None = None
    seed: int = 0
    skip_unreadable: bool = False
    exclude: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.band_rule not in BAND_RULES:
            raise InputError(f"band rule must be one of {BAND_RULES}, got {self.band_rule!r}")
        if self.band_rule in ("select", "window") and self.bands is None:
            raise InputError(f"band rule {self.band_rule!r} needs --bands N")
        if self.bands is not None and self.bands < 1:
            raise InputError(f"--bands must be >= 1, got {self.bands}")
        if len(self.scales) != len(self.strides):
            raise InputError(
                f"{len(self.scales)} scales but {len(self.strides)} strides; give one per scale"
            )
        if self.val_images and self.val_list:
            raise InputError("give --val-images or --val-list, not both")
        patch_count(self.patch, self.patch, self.patch, self.scales, self.strides)  # checks


def band_windows(n_bands: int, bands: int | None, rule: str, source: str) -> list[list[int]]:
    """Band index lists a cube of ``n_bands`` bands contributes under ``rule``."""
    if bands is None:
        return [list(range(n_bands))]
    if n_bands < bands:
        raise InputError(f"{source}: {n_bands} bands, fewer than --bands {bands}")
    if rule == "error":
        if n_bands != bands:
            raise InputError(f"{source}: {n_bands} bands, expected --bands {bands}")
        return [list(range(n_bands))]
    if rule == "select":
        return [np.round(np.linspace(0, n_bands - 1, bands)).astype(int).tolist()]
    k = math.ceil(n_bands / bands)
    offsets = np.round(np.linspace(0, n_bands - bands, k)).astype(int)
    return [list(range(o, o + bands)) for o in offsets]


def _match(path: Path, src: Path, names: Sequence[str]) -> str | None:
    rel = path.relative_to(src).as_posix()
    for name in names:
        if name in (path.name, path.stem, rel):
            return name
    return None


class _NpyWriter:
    """Append ``(k, bands, p, p)`` float32 blocks to a ``.npy`` file; header at close."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.handle.write(b"\0" * _HEADER_BYTES)
        self.n, self.item_shape = 0, None

    def write(self, block: np.ndarray) -> None:
        if self.item_shape is None:
            self.item_shape = block.shape[1:]
        elif block.shape[1:] != self.item_shape:
            raise InputError(f"patch shape {block.shape[1:]} differs from {self.item_shape}")
        self.handle.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        self.n += block.shape[0]

    def close(self, fallback_shape: tuple[int, ...]) -> None:
        shape = (self.n, *(self.item_shape or fallback_shape))
        text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
        length = _HEADER_BYTES - 10
        header = b"\x93NUMPY\x01\x00" + struct.pack("<H", length)
        header += (text.ljust(length - 1) + "\n").encode("latin1")
        self.handle.seek(0)
        self.handle.write(header)
        self.handle.close()


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    config: PrepareConfig = PrepareConfig(),
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> dict:
    """Write the patch store of the cubes under ``src`` into ``out``; return the manifest."""
    src, out = Path(src), Path(out)
    log = log or (lambda _msg: None)
    if (out / "manifest.json").exists() and not force:
        raise OutputError(f"{out} already holds a patch store (manifest.json); use --force")
    files = [f for f in find_cubes(src) if _match(f, src, config.exclude) is None]
    if not files:
        raise InputError(f"{src}: no cube files ({', '.join(FORMATS)}) found")
    # Pass 1: read every cube (one at a time), check band counts, decide the split.
    infos, skipped = _survey(files, src, config, log)
    _check_band_counts(infos, config)
    val = _validation_files(infos, src, config)
    # Pass 2: normalise, crop, patch, append to the split's file.
    out.mkdir(parents=True, exist_ok=True)
    images, counts = _write_patches(infos, val, out, config, log)
    sources = [
        {k: v for k, v in i.items() if k not in ("path", "windows")}
        | {"sha256": sha256_file(i["path"]), "split": "val" if i["file"] in val else "train"}
        for i in infos
    ]
    manifest = {
        "format": "ras2s-patches/1",
        "command": command,
        "source_dir": str(src.resolve()),
        "config": asdict(config),
        "normalisation": "per source cube, global min-max to [0, 1], before band rule and crop",
        "band_rule": config.band_rule,
        "bands": config.bands or infos[0]["shape"][0],
        "patch": config.patch,
        "crop": config.crop,
        "scales": list(config.scales),
        "strides": list(config.strides),
        "seed": config.seed,
        "sources": sources,
        "skipped": skipped,
        "images": images,
        "counts": counts,
        "files": {"train": "train.npy", "val": "val.npy"},
    }
    write_text_atomically(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def _survey(
    files: list[Path], src: Path, config: PrepareConfig, log: Callable[[str], None]
) -> tuple[list[dict], list[dict]]:
    """Shape, dtype, key and layout of every readable cube; the skipped ones."""
    infos, skipped = [], []
    for f in files:
        try:
            cube = read_cube(f, key=config.key, layout=config.layout)
        except Ras2sError as err:
            if not config.skip_unreadable:
                raise
            skipped.append({"file": f.relative_to(src).as_posix(), "reason": str(err)})
            log(f"skipped {f}: {err}")
            continue
        infos.append(
            {
                "file": f.relative_to(src).as_posix(),
                "path": f,
                "shape": list(cube.data.shape),
                "dtype": str(cube.data.dtype),
                "key": cube.key,
                "layout": cube.layout,
            }
        )
        del cube
    if not infos:
        raise InputError(f"{src}: none of the {len(files)} files could be read")
    return infos, skipped


def _check_band_counts(infos: list[dict], config: PrepareConfig) -> None:
    """Refuse unequal band counts under rule ``error``; give each cube its band windows."""
    counts = {i["file"]: i["shape"][0] for i in infos}
    if (
        config.band_rule == "error"
        and len(set(counts.values()) | ({config.bands} if config.bands else set())) > 1
    ):
        listing = ", ".join(f"{k}: {v}" for k, v in counts.items())
        want = f" (expected {config.bands})" if config.bands else ""
        raise InputError(
            f"cubes have different band counts{want}: {listing}; choose --bands N with "
            "--band-rule select (N evenly spaced bands) or window (N consecutive bands)"
        )
    for i in infos:
        i["windows"] = band_windows(i["shape"][0], config.bands, config.band_rule, i["file"])


def _validation_files(infos: list[dict], src: Path, config: PrepareConfig) -> set[str]:
    """The files held out for validation (by --val-list names, or --val-images drawn)."""
    val: set[str] = set()
    if config.val_list:
        for name in config.val_list:
            hits = [i["file"] for i in infos if _match(i["path"], src, [name])]
            if not hits:
                raise InputError(f"--val-list: no cube named {name!r} under {src}")
            val.update(hits)
    elif config.val_images:
        if config.val_images >= len(infos):
            raise InputError(
                f"--val-images {config.val_images} leaves no training image ({len(infos)} cubes)"
            )
        order = np.random.default_rng(config.seed).permutation(len(infos))
        val = {infos[k]["file"] for k in order[: config.val_images]}
    return val


def _write_patches(
    infos: list[dict], val: set[str], out: Path, config: PrepareConfig, log: Callable
) -> tuple[list[dict], dict[str, int]]:
    """Patch every cube into ``train.npy`` / ``val.npy`` (both written atomically)."""
    images = []
    with contextlib.ExitStack() as stack:
        writers = {
            split: _NpyWriter(stack.enter_context(atomic_path(out / f"{split}.npy")))
            for split in ("train", "val")
        }
        for writer in writers.values():  # closed before a failed temporary file is removed
            stack.callback(writer.handle.close)
        for i in infos:
            split = "val" if i["file"] in val else "train"
            data = read_cube(i["path"], key=config.key, layout=config.layout).data
            cube, _, _ = normalise(data, source=i["file"])
            for w, band_ids in enumerate(i["windows"]):
                part = centre_crop(cube[band_ids], config.crop)
                patches = extract_patches(part, config.patch, config.scales, config.strides)
                images.append(
                    {
                        "file": i["file"],
                        "split": split,
                        "window": w,
                        "bands": _compact(band_ids),
                        "crop": list(part.shape[1:]),
                        "count": int(patches.shape[0]),
                        "offset": writers[split].n,
                    }
                )
                writers[split].write(patches)
            log(f"{i['file']}: {split}, {len(i['windows'])} band set(s)")
        n_bands = config.bands or infos[0]["shape"][0]
        for w in writers.values():
            w.close((n_bands, config.patch, config.patch))
    return images, {split: w.n for split, w in writers.items()}


def _compact(ids: list[int]) -> list[int] | dict[str, int]:
    """A run of consecutive band indices as ``{"start", "stop"}``, else the list."""
    if ids == list(range(ids[0], ids[0] + len(ids))):
        return {"start": ids[0], "stop": ids[0] + len(ids)}
    return ids


def load_manifest(data_dir: str | os.PathLike) -> dict:
    """The manifest of a patch store, with an error naming the folder when absent."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{data_dir}: no manifest.json (not a patch store; run `ras2s prepare`)")
    return json.loads(path.read_text())
