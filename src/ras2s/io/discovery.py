"""Finding cubes: folders searched for cube files, default output names, content hashes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ras2s.errors import InputError

from .base import FORMATS
from .checks import check_suffix, is_png_cube_folder


def _is_zarr_dir(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" and path.is_dir()


def _is_cube(path: Path) -> bool:
    return (
        (path.is_file() and path.suffix.lower() in FORMATS and path.suffix.lower() != ".zarr")
        or _is_zarr_dir(path)
        or is_png_cube_folder(path)
    )


def find_cubes(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Cube files, zarr stores and PNG-band folders in ``folder``, sorted.

    Names starting with ``.`` are skipped; a PNG-band folder or a ``.zarr`` folder is a
    cube (not searched further). ``recursive`` searches sub-folders too (following
    links). An empty list when there is none; :class:`InputError` when ``folder`` is not
    a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of cubes")
    if not recursive:
        return sorted(p for p in root.iterdir() if not p.name.startswith(".") and _is_cube(p))
    found = []
    for here, dirs, files in os.walk(root, followlinks=True):
        base = Path(here)
        if base != root and is_png_cube_folder(base):
            found.append(base)
            dirs.clear()
            continue
        stores = [d for d in dirs if not d.startswith(".") and _is_zarr_dir(base / d)]
        found += [base / d for d in stores]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in stores)
        found += [base / f for f in files if not f.startswith(".") and _is_cube(base / f)]
    return sorted(found)


def expand_inputs(
    items: Iterable[str | os.PathLike], *, recursive: bool = False, skip_suffix: str | None = None
) -> list[Path]:
    """Input paths with every folder of cubes replaced by the cubes it holds.

    A file, a PNG-band folder or a ``.zarr`` store stands for itself (missing ones too:
    reading them says what is wrong); another folder gives :func:`find_cubes` and must
    hold at least one. ``skip_suffix`` (``"_denoised"``) leaves out, from folders only,
    the cubes whose stem ends with it: what an earlier run wrote there is not picked up
    again.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir() and not is_png_cube_folder(path) and not _is_zarr_dir(path):
            found = find_cubes(path, recursive=recursive)
            if skip_suffix:
                found = [p for p in found if not _stem(p).endswith(skip_suffix)]
            if not found:
                raise InputError(f"{path}: folder holds no cube files ({', '.join(FORMATS)})")
            paths.extend(found)
        else:
            paths.append(path)
    return paths


def _stem(path: Path) -> str:
    return path.stem if path.suffix.lower() in FORMATS else path.name


def default_output_path(input_path: str | os.PathLike, suffix: str = "_denoised") -> Path:
    """The default output beside the input: ``<stem><suffix><ext>``.

    A PNG folder gives ``<folder><suffix>/``; an ENVI ``x.hdr`` gives ``x<suffix>.hdr``;
    a zarr store ``x.zarr`` gives ``x<suffix>.zarr``.
    """
    check_suffix(suffix)
    p = Path(input_path)
    if p.suffix.lower() not in FORMATS and (p.is_dir() or p.suffix == ""):
        return p.with_name(p.name + suffix)
    return p.with_name(p.stem + suffix + p.suffix)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file; of a folder (PNG bands, zarr): of each file's name and bytes.

    A folder's files are taken in sorted order, each as ``name + NUL + content``; a
    zarr store's files (in sub-folders) by their path inside it.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if _is_zarr_dir(path):
        files = sorted(
            (p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).parts
        )
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
    else:
        files = [path]
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Hex sha256 of an array's bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
