"""What protects data: checks on inputs and outputs before any work, and header guards.

Inputs: :func:`check_input` (missing paths, FIFOs and devices that could hang a read,
unknown extensions, unreadable files); :func:`check_cube` (3-D, real numbers, not
empty); the guards that refuse a header declaring more than its file holds
(:func:`check_declared`, :func:`npy_header`, :func:`h5_check_stored`) before anything
is allocated. Outputs: :func:`check_output` and :func:`check_replaceable` (never an
input, never a link or a device, never an existing file without ``force``, never a
folder that holds anything but what ras2s would write there).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ras2s.errors import InputError, OutputError

from .base import FORMATS, MAT_NUMERIC, SUPPORTED, gib, head, is_real_numeric, mat_class, one_line

# --------------------------------------------------------------------------- inputs


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(p: Path, owner: Path | None = None) -> None:
    """InputError unless ``p`` (after links) is a regular file: a FIFO or device could hang.

    ``owner`` is the file that names ``p`` (an ENVI header naming its data file).
    """
    where = f"{owner}: its data file {p}" if owner else f"{p}:"
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise InputError(f"{where} cannot be opened ({one_line(exc)})") from exc
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{where} is {kind(mode)}, not a regular file; ras2s reads cubes only from "
            "regular files"
        )


def is_zarr_store(p: Path) -> bool:
    """True for a folder that holds a zarr store (v2 or v3 metadata at its top)."""
    return p.is_dir() and any((p / n).is_file() for n in ("zarr.json", ".zgroup", ".zarray"))


def is_png_cube_folder(path: str | os.PathLike) -> bool:
    """True for a directory holding at least one .png and no file with a cube extension."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return False
    try:
        files = [f for f in p.iterdir() if f.is_file()] if p.is_dir() else []
    except OSError:
        return False
    return any(f.suffix.lower() == ".png" for f in files) and not any(
        f.suffix.lower() in FORMATS for f in files
    )


def check_input(path: str | os.PathLike) -> str:
    """The format of an input cube path, or :class:`InputError` naming what is wrong.

    Refused: a missing path, a dangling link, a FIFO, socket or device (reading one
    could hang), an unknown extension, an unreadable file. Cheap (nothing is parsed):
    used to refuse bad inputs before any work.
    """
    return input_format(Path(path))


def input_format(p: Path) -> str:
    """:func:`check_input` for a :class:`~pathlib.Path`."""
    if not p.exists():
        if p.is_symlink():
            raise InputError(f"{p}: is a dangling symbolic link (its target does not exist)")
        raise InputError(f"{p}: no such file or folder")
    if p.suffix.lower() == ".zarr":
        if not p.is_dir():
            raise InputError(f"{p}: a .zarr cube must be a folder (a zarr directory store)")
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputError(f"{p}: permission denied, cannot read the folder")
        return "zarr"
    if p.is_dir():
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputError(f"{p}: permission denied, cannot read the folder")
        if is_png_cube_folder(p):
            return "png"
        hint = ""
        with contextlib.suppress(OSError):
            subs = [d for d in p.iterdir() if d.is_dir() and is_png_cube_folder(d)]
            if len(subs) == 1:
                hint = f" (did you mean {subs[0]}?)"
        raise InputError(
            f"{p}: is a folder but not a PNG cube folder (one .png per band and "
            f"no other cube files){hint}"
        )
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        hint = ""
        if p.suffix.lower() == ".png":
            hint = "; a PNG cube is a folder of per-band .png files"
        elif p.with_suffix(".hdr").is_file():
            hint = f"; for ENVI pass the header {p.with_suffix('.hdr').name}"
        raise InputError(f"{p}: unknown extension {p.suffix!r}; supported: {SUPPORTED}{hint}")
    check_regular(p)
    try:
        head(p, 1)
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied, cannot read the file") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot open the file ({one_line(exc)})") from exc
    return fmt


def check_cube(shape: tuple | None, dtype: np.dtype, source: object, key: str | None) -> None:
    """Raise InputError unless ``shape``/``dtype`` make a non-empty 3-D real numeric cube."""
    what = f"'{key}'" if key else "the array"
    shape = tuple(int(s) for s in shape or ())
    if len(shape) != 3:
        hint = ""
        if len(shape) > 3 and 1 in shape:
            hint = "; singleton axes are not squeezed, save the cube without them"
        raise InputError(
            f"{source}: {what} is {len(shape)}-D {shape}; a cube must be 3-D "
            f"(rows x cols x bands or bands x rows x cols){hint}"
        )
    if not is_real_numeric(dtype):
        raise InputError(
            f"{source}: {what} {shape} has dtype {dtype}; a cube must hold "
            "real integers or floats (not bool, complex, text or objects)"
        )
    if min(shape) < 0:
        raise InputError(f"{source}: {what} declares a negative size {shape}; the file is corrupt")
    if min(shape) == 0:
        raise InputError(f"{source}: {what} has a zero-size axis {shape}; the cube is empty")


def check_declared(path: Path, shape: tuple, dtype: np.dtype, have: int, what: str) -> None:
    """InputError when ``shape`` x ``dtype`` needs more bytes than the file holds."""
    need = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    if need > have:
        raise InputError(
            f"{path}: {what} declares {tuple(int(s) for s in shape)} {np.dtype(dtype)} "
            f"({gib(need)}), but the file holds only {gib(have)}; it is truncated or "
            "its header is wrong"
        )


def npy_header(fh, size: int) -> tuple[tuple, np.dtype, bool]:
    """Shape, dtype and Fortran order from an .npy header (``fh`` left at the data).

    ``size``: bytes in the file (or archive member); a header length field past it is
    refused before numpy reads (and allocates) that many bytes.
    """
    version = np.lib.format.read_magic(fh)
    start = fh.tell()
    width = 2 if version == (1, 0) else 4
    length = int.from_bytes(fh.read(width), "little")
    if start + width + length > size:
        raise ValueError(
            f"its header declares {length:,} bytes, but the file holds {size:,}; "
            "it is truncated or its header is wrong"
        )
    fh.seek(start)
    read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
        version, np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read(fh)
    return shape, dtype, fortran


def h5_check_stored(path: Path, ds) -> None:
    """InputError when an HDF5 dataset declares data the file does not store (sparse)."""
    if ds.shape is None or ds.size == 0:
        return
    if ds.chunks is not None:
        grid = np.ceil(np.divide(ds.shape, ds.chunks)).astype(np.int64)
        total = int(np.prod(grid, dtype=np.float64))
        stored = ds.id.get_num_chunks()
        if stored < total:
            raise InputError(
                f"{path}: dataset {ds.name!r} declares {ds.shape} {ds.dtype} "
                f"({gib(ds.nbytes)}), but only {stored} of its {total} chunks are stored; "
                "the file is incomplete (sparse)"
            )
    elif ds.id.get_storage_size() < ds.nbytes and ds.external is None:
        raise InputError(
            f"{path}: dataset {ds.name!r} declares {ds.shape} {ds.dtype} ({gib(ds.nbytes)}), "
            f"but only {gib(ds.id.get_storage_size())} are stored; the file is incomplete"
        )


# --------------------------------------------------------------------------- outputs


def output_format(p: Path) -> str:
    """The format an output path asks for (its extension; no extension: PNG folder)."""
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is not None:
        return fmt
    if p.suffix == "" or (p.is_dir() and not p.is_symlink()):
        return "png"
    raise OutputError(f"{p}: unknown output extension {p.suffix!r}; supported: {SUPPORTED}")


def check_dtype(p: Path, fmt: str, dtype: np.dtype) -> None:
    """OutputError when the output format cannot hold ``dtype`` (before any work)."""
    from spectral.io import envi

    dtype = np.dtype(dtype)
    if not is_real_numeric(dtype):
        raise OutputError(f"{p}: cannot write a cube of dtype {dtype}; it must be real numbers")
    others = "pick another format (.tif, .npy, .h5)"
    if fmt == "png" and dtype not in (np.uint8, np.uint16):
        raise OutputError(
            f"{p}: PNG holds only uint8 or uint16 bands, this cube is "
            f"{dtype}; pick another format (.tif, .npy, .mat, .h5, .hdr)"
        )
    if fmt == "mat" and mat_class(dtype) not in MAT_NUMERIC:
        raise OutputError(f"{p}: MATLAB has no {dtype} type; {others}")
    if fmt == "envi" and dtype.char not in envi.dtype_to_envi:
        raise OutputError(f"{p}: ENVI has no {dtype} type; {others}")


def input_files(path: str | os.PathLike) -> list[Path]:
    """The real paths an input cube occupies; outputs must never land on (or in) them.

    The file itself, an ENVI header and its data file, or a PNG-band folder or a zarr
    store (which cover their contents).
    """
    p = Path(os.path.realpath(path))
    found = [p]
    if p.suffix.lower() == ".hdr":
        stems = [p.with_suffix(s) for s in ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip")]
        found += [c for s in stems for c in (s, s.with_suffix(s.suffix.upper())) if c.exists()]
    return found


def overlaps(target: Path, inputs: Iterable[str | os.PathLike]) -> Path | None:
    """The input that ``target`` would overwrite (itself, inside it, or holding it)."""
    real = Path(os.path.realpath(target))
    for source in inputs:
        for occupied in input_files(source):
            if real == occupied or real.is_relative_to(occupied) or occupied.is_relative_to(real):
                return Path(source)
    return None


def check_replaceable(
    path: str | os.PathLike,
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    folder: bool | str = False,
) -> None:
    """Refuse, before any work, an output path that must not or cannot be written.

    Refused always: a path that is one of ``inputs`` (or inside an input PNG-band folder,
    or an ENVI input's data file), a symbolic link (dangling or not), a FIFO, socket or
    device, a missing or read-only parent folder. Refused without ``force``: any existing
    path. With ``force`` only a regular file (``folder=False``), a folder holding
    nothing but band PNGs (``folder=True``) or a zarr store (``folder="zarr"``) is ever
    replaced.

    Raises
    ------
    OutputError
        Naming the path and why.
    """
    p = Path(path)
    source = overlaps(p, inputs)
    if source is not None:
        raise OutputError(
            f"{p}: would overwrite the input {source}; an input is never replaced, even "
            "with --force (choose another output name)"
        )
    parent = p.parent
    if not parent.is_dir():
        raise OutputError(f"{p}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: output folder {parent} is not writable")
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return
    check_mode(p, mode, folder)
    if not force:
        raise OutputError(f"{p}: already exists; pass --force to overwrite it")


def check_mode(p: Path, mode: int, folder: bool | str) -> None:
    """OutputError unless an existing ``p`` is something --force may replace."""
    if folder == "zarr":
        if stat.S_ISDIR(mode):
            if not is_zarr_store(p):
                raise OutputError(
                    f"{p}: is a folder but not a zarr store; refusing to replace the folder"
                )
            return
        if stat.S_ISREG(mode):
            raise OutputError(f"{p}: is a file; a .zarr output is a folder (a zarr store)")
        raise OutputError(f"{p}: is {kind(mode)}; ras2s replaces only a zarr store folder")
    if folder and stat.S_ISDIR(mode):
        others = sorted(
            f.name for f in p.iterdir() if f.suffix.lower() != ".png" or not plain_file(f)
        )
        if others:
            raise OutputError(
                f"{p}: holds {others[0]!r} ({len(others)} in all), not only band PNGs; "
                "refusing to replace the folder"
            )
        return
    if not folder and stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise OutputError(f"{p}: is a folder; expected a file name")
    if stat.S_ISREG(mode):
        raise OutputError(
            f"{p}: is a file with no extension; refusing to replace it by a PNG-band folder "
            "(give the output an extension such as .npy or .tif)"
        )
    what = "a regular file" if not folder else "a PNG-band folder"
    raise OutputError(f"{p}: is {kind(mode)}; ras2s replaces only {what}")


def plain_file(p: Path) -> bool:
    """True for a regular file (not a link to one)."""
    return stat.S_ISREG(os.lstat(p).st_mode)


def check_output(
    path: str | os.PathLike,
    dtype: np.dtype | type | None = None,
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> str:
    """Refuse, before any work, a cube output :func:`ras2s.io.write_cube` would refuse.

    Checks the extension, that the format can hold ``dtype`` (when given), and every
    file the output occupies (an ENVI ``.hdr`` and its ``.img``) with
    :func:`check_replaceable`. Returns the output's format.
    """
    p = Path(path)
    fmt = output_format(p)
    if dtype is not None:
        check_dtype(p, fmt, dtype)
    folder: bool | str = {"png": True, "zarr": "zarr"}.get(fmt, False)
    for target in output_files(p):
        check_replaceable(target, force=force, inputs=inputs, folder=folder)
    return fmt


def output_files(path: str | os.PathLike) -> list[Path]:
    """The paths a cube output occupies: ``path``, and ``.img`` beside an ENVI ``.hdr``."""
    p = Path(path)
    return [p, p.with_suffix(".img")] if FORMATS.get(p.suffix.lower()) == "envi" else [p]


def check_suffix(suffix: str) -> str:
    """``suffix`` if it can end a file name in the same folder, else :class:`InputError`."""
    seps = {"/", os.sep, os.altsep or "/", "\0"}
    if not suffix or any(c in suffix for c in seps) or suffix.strip(".") == "":
        raise InputError(
            f"output suffix {suffix!r} must be a non-empty part of a file name (no slash): "
            "the output is written beside its input as <stem><suffix><ext>"
        )
    return suffix
