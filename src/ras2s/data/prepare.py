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

import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, Ras2sError
from ..io import is_png_cube_folder, read_cube
from .patches import centre_crop, extract_patches, minmax_normalise, patch_count

BAND_RULES = ("error", "select", "window")
CUBE_SUFFIXES = (".mat", ".npy", ".npz", ".h5", ".hdf5", ".tif", ".tiff", ".hdr")
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


def find_cubes(src: Path) -> list[Path]:
    """Cube files (and PNG band folders) under ``src``, recursively, in sorted order."""
    if not src.is_dir():
        raise InputError(f"{src}: not a folder of cubes")
    found = []
    for root, dirs, files in os.walk(src, followlinks=True):
        dirs.sort()
        here = Path(root)
        if here != src and is_png_cube_folder(here):
            found.append(here)
            dirs.clear()
            continue
        found += [here / f for f in sorted(files) if Path(f).suffix.lower() in CUBE_SUFFIXES]
    return sorted(found)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (of every file, sorted, for a PNG folder)."""
    digest = hashlib.sha256()
    for f in sorted(path.iterdir()) if path.is_dir() else [path]:
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


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
        self.path, self.part = path, path.with_name(path.name + ".part")
        self.handle = open(self.part, "wb")
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
        os.replace(self.part, self.path)

    def abort(self) -> None:
        self.handle.close()
        if self.part.exists():
            self.part.unlink()


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
        raise InputError(f"{src}: no cube files ({', '.join(CUBE_SUFFIXES)}) found")

    # Pass 1: read every cube (one at a time), check band counts, decide the split.
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

    val = set()
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

    # Pass 2: normalise, crop, patch, append to the split's file.
    out.mkdir(parents=True, exist_ok=True)
    writers = {"train": _NpyWriter(out / "train.npy"), "val": _NpyWriter(out / "val.npy")}
    images = []
    try:
        for i in infos:
            split = "val" if i["file"] in val else "train"
            cube = minmax_normalise(read_cube(i["path"], key=config.key, layout=config.layout).data)
            for w, band_ids in enumerate(i["windows"]):
                part = centre_crop(cube[band_ids], config.crop)
                _, h, wd = part.shape
                patches = extract_patches(part, config.patch, config.scales, config.strides)
                start = writers[split].n
                writers[split].write(patches)
                images.append(
                    {
                        "file": i["file"],
                        "split": split,
                        "window": w,
                        "bands": _compact(band_ids),
                        "crop": [h, wd],
                        "count": int(patches.shape[0]),
                        "offset": start,
                    }
                )
            log(f"{i['file']}: {split}, {len(i['windows'])} band set(s)")
        n_bands = config.bands or infos[0]["shape"][0]
        for w in writers.values():
            w.close((n_bands, config.patch, config.patch))
    except BaseException:
        for w in writers.values():
            w.abort()
        raise

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
        "counts": {s: writers[s].n for s in writers},
        "files": {"train": "train.npy", "val": "val.npy"},
    }
    tmp = out / "manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest


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
