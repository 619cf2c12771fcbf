"""A folder of per-band PNGs (CAVE style), through Pillow: read and written whole.

One 8- or 16-bit grayscale PNG per band (RGB with equal channels is accepted), bands
in natural order of their file names. An output keeps its PNG input's file names.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ras2s.errors import InputError

from .base import InMemory, Opened, native, natural_key, one_line, whole_file


def _png_band(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            a = np.asarray(im)
    except Exception as exc:
        raise InputError(f"{path}: cannot read PNG ({one_line(exc)})") from exc
    if mode == "L" or mode.startswith("I;16"):
        return native(a)
    if mode == "I" and a.min() >= 0 and a.max() <= 65535:
        return a.astype(np.uint16)
    if mode in ("RGB", "RGBA", "LA"):
        colour = a[..., :1] if mode == "LA" else a[..., :3]
        if not (colour == colour[..., :1]).all():
            raise InputError(
                f"{path}: {mode} PNG whose colour channels differ; a band "
                "PNG must be grayscale (or RGB with identical channels)"
            )
        return np.ascontiguousarray(colour[..., 0])
    raise InputError(
        f"{path}: PNG mode {mode!r} is not supported; a band must be 8- or 16-bit grayscale"
    )


def _bytes_per_pixel(path: Path) -> int:
    """What one pixel of a band will take once read (from the PNG's header)."""
    try:
        with Image.open(path) as im:
            return 2 if im.mode.startswith("I") else 1
    except Exception:  # noqa: BLE001 - reading the band says what is wrong with it
        return 1


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - reading the band says what is wrong with it
        return (0, 0)


def open_png(folder: Path, key: str | None, max_bytes: int | None) -> Opened:
    """Every band PNG of ``folder``, read whole (refused up front over ``max_bytes``)."""
    names = sorted(os.listdir(folder))
    pngs = sorted(
        (
            n
            for n in names
            if n.lower().endswith(".png") and not n.startswith(".") and (folder / n).is_file()
        ),
        key=natural_key,
    )
    ignored = [n for n in names if n not in pngs]
    if max_bytes is not None and pngs:
        w, h = _size(folder / pngs[0])
        nbytes = len(pngs) * w * h * _bytes_per_pixel(folder / pngs[0])
        whole_file(folder, f"a folder of {len(pngs)} band PNGs", nbytes, max_bytes)
    cube = None
    for i, name in enumerate(pngs):
        band = _png_band(folder / name)
        if cube is None:
            cube = np.empty((len(pngs), *band.shape), band.dtype)
        elif band.shape != cube.shape[1:] or band.dtype != cube.dtype:
            raise InputError(
                f"{folder / name}: band is {band.shape} {band.dtype}, but {pngs[0]} is "
                f"{cube.shape[1:]} {cube.dtype}; all band PNGs must have the same size "
                "and bit depth"
            )
        cube[i] = band
    if cube is None:
        raise InputError(f"{folder}: holds no band PNG")
    meta = {"files": pngs, "ignored": ignored}
    return Opened(InMemory(cube), "png", None, meta, layout="BHW", windowed=False)


def write_png(folder: Path, data: np.ndarray, key: str, layout: str, like: object) -> None:
    """A whole bands-first cube as one PNG per band in ``folder`` (the input's names)."""
    names = (
        list(like.metadata.get("files", [])) if like is not None and like.format == "png" else []
    )
    if len(names) != data.shape[0]:
        width = max(3, len(str(data.shape[0])))
        names = [f"band_{i + 1:0{width}d}.png" for i in range(data.shape[0])]
    for name, band in zip(names, data, strict=True):
        Image.fromarray(np.ascontiguousarray(band)).save(folder / name, format="PNG")


def png_writer(tmp: Path, plan) -> object:
    """The PNG writer: bands buffered in memory, written by :func:`write_png` at commit."""
    from .dataset import Buffered

    return Buffered(tmp, plan, lambda *args: write_png(*args))
