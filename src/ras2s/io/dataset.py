"""A dataset per open file, in rasterio's way: :func:`open_cube` and :func:`create_cube`.

:class:`CubeSource` reads a cube window by window where its format allows it (ENVI,
``.npy``, HDF5, MAT 7.3, TIFF, zarr) and whole on open where it does not (MAT v5,
``.npz``, PNG folders); :class:`CubeSink` writes one window by window into a temporary
file (in RAM for MAT v5 below the budget, ``.npz`` and PNG folders) and publishes it
atomically on :meth:`CubeSink.commit`. :func:`read_cube` and :func:`write_cube` are
the same two objects used for the whole cube at once: one code path for every size.

Each format module provides an opener ``(path, key, max_bytes) -> Opened`` and a writer
factory ``(tmp, plan) -> writer`` (``write(key, block)``, ``finish()``, ``close()``),
registered in :data:`_OPENERS` and :data:`_WRITERS`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ras2s.errors import InputError, OutputError, Ras2sError

from . import envi as envi_format
from . import h5 as h5_format
from . import mat as mat_format
from . import npy as npy_format
from . import png as png_format
from . import tiff as tiff_format
from . import zarr as zarr_format
from .atomic import StagedFile, StagedFolder
from .base import CubeFile, Opened, gib, is_real_numeric, nbytes_of, one_line
from .checks import check_cube, check_output, input_format, output_format
from .layout import FROM_BHW, TO_BHW, detect_layout, parse_layout

Window = tuple[slice, slice]

_OPENERS: dict[str, Callable[[Path, str | None, int | None], Opened]] = {
    "mat": mat_format.open_mat,
    "npy": npy_format.open_npy,
    "npz": npy_format.open_npz,
    "h5": h5_format.open_h5,
    "tiff": tiff_format.open_tiff,
    "envi": envi_format.open_envi,
    "png": png_format.open_png,
    "zarr": zarr_format.open_zarr,
}


# --------------------------------------------------------------------------- windows


def _axis(index: Any, n: int, what: str) -> tuple[slice, bool]:
    """``index`` (a slice, an int or None) as ``slice(start, stop, step)`` within ``n``.

    The bool says whether the axis is dropped (an int index, as numpy does).
    """
    if index is None:
        return slice(0, n, 1), False
    if isinstance(index, slice):
        start, stop, step = index.indices(n)
        if step < 1:
            raise ValueError(f"{what} {index}: only forward steps (>= 1) are supported")
        return slice(start, max(start, stop), step), False
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        i = int(index) + (n if index < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"{what} {index} is out of range for size {n}")
        return slice(i, i + 1, 1), True
    if isinstance(index, tuple) and len(index) == 2:  # rasterio's ((start, stop), ...)
        return _axis(slice(*index), n, what)
    raise TypeError(f"{what} must be a slice, an int or None, got {index!r}")


def _window(window: Any, shape: tuple[int, int, int]) -> tuple[slice, slice]:
    """``(rows, cols)`` slices from a window: None, or two slices (or (start, stop) pairs)."""
    if window is None:
        return slice(0, shape[1], 1), slice(0, shape[2], 1)
    if (
        not isinstance(window, (tuple, list))
        or len(window) != 2
        or not all(isinstance(w, (slice, tuple)) for w in window)
    ):
        raise TypeError(
            f"a window is (rows, cols), two slices (or (start, stop) pairs); got {window!r}"
        )
    rows, _ = _axis(window[0], shape[1], "rows")
    cols, _ = _axis(window[1], shape[2], "cols")
    return rows, cols


def _extent(s: slice) -> int:
    return len(range(s.start, s.stop, s.step))


# --------------------------------------------------------------------------- reading


class CubeSource:
    """An open cube file: bands-first shape and dtype, its metadata, windowed reads.

    Made by :func:`open_cube`. A ``CubeSource`` can stand where an array is read window
    by window: ``source[bands, rows, cols]`` (slices or ints, as numpy) reads that
    window, and ``shape``, ``dtype``, ``ndim`` and ``nbytes`` are those of the
    bands-first cube.

    Attributes
    ----------
    shape : tuple of 3 int
        ``(bands, H, W)``.
    dtype : numpy.dtype
        The file's dtype in native byte order (no conversion, no scaling).
    path : pathlib.Path
        The file (or PNG folder, or zarr store).
    format, key, layout, metadata
        As in :class:`ras2s.io.CubeFile` (exactly what :func:`read_cube` gives).
    nbytes : int
        Bytes of the whole cube in memory.
    windowed : bool
        True when :meth:`read` reads only the window from the disk; False for formats
        read whole on open (MAT v4/v5, ``.npz``, PNG folders, TIFFs that cannot be
        windowed), whose data is held from open to :meth:`close`.

    Examples
    --------
    >>> with open_cube("scene.hdr") as src:  # doctest: +SKIP
    ...     block = src.read((slice(0, 256), slice(0, 256)))  # (bands, 256, 256)

    A source pickles as the arguments that opened it (an unpickled copy, on a dask
    worker say, opens the file again).
    """

    ndim = 3
    _opened_with: tuple = ()

    def __init__(self, path: Path, opened: Opened, layout: str) -> None:
        self._array = opened.array
        self._axes = TO_BHW[layout]
        self.path = path
        self.format = opened.format
        self.key = opened.key
        self.layout = layout
        self.metadata = opened.metadata
        self.windowed = bool(opened.windowed)
        stored = tuple(int(s) for s in opened.array.shape)
        self.shape: tuple[int, int, int] = tuple(stored[i] for i in self._axes)  # type: ignore[assignment]
        self.dtype = np.dtype(opened.array.dtype).newbyteorder("=")
        self.nbytes = nbytes_of(self.shape, self.dtype)

    def read(self, window: Window | None = None, bands: slice | None = None) -> np.ndarray:
        """Read a window of the cube, bands first.

        Parameters
        ----------
        window : (slice, slice), optional
            ``(rows, cols)``; None reads every pixel. Slices follow numpy (negative
            bounds count from the end, bounds are clipped; steps must be >= 1).
            rasterio's ``((row_start, row_stop), (col_start, col_stop))`` works too.
        bands : slice, optional
            The bands to read; None reads them all.

        Returns
        -------
        numpy.ndarray
            A new C-contiguous ``(bands, h, w)`` array in the file's dtype (native
            byte order), never a view of anything the source holds.

        Raises
        ------
        InputError
            The file turned out corrupt or truncated where the window lies (one line).
        """
        if self._array is None:
            raise ValueError(f"{self.path}: the cube is closed")
        rows, cols = _window(window, self.shape)
        b, _ = _axis(bands, self.shape[0], "bands")
        return self._take((b, rows, cols))

    def __getitem__(self, key: Any) -> np.ndarray:
        """``source[bands, rows, cols]``: numpy's basic indexing, read from the file."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (4 - len(key)) + key[i + 1 :]
        if len(key) > 3:
            raise IndexError(f"a cube has 3 axes (bands, rows, cols), got {len(key)} indices")
        key = tuple(key) + (slice(None),) * (3 - len(key))
        if self._array is None:
            raise ValueError(f"{self.path}: the cube is closed")
        names = ("bands", "rows", "cols")
        axes = [_axis(k, n, w) for k, n, w in zip(key, self.shape, names, strict=True)]
        out = self._take(tuple(s for s, _ in axes))
        drop = tuple(i for i, (_, d) in enumerate(axes) if d)
        return out.squeeze(axis=drop) if drop else out

    def _take(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        if min(_extent(k) for k in key) == 0:
            return np.empty(tuple(_extent(k) for k in key), self.dtype)
        stored = tuple(key[i] for i in FROM_BHW[self.layout])
        with _reading(self.path, self.format):
            if hasattr(self._array, "take"):  # a raw array: read, transposed, converted
                return self._array.take(stored, self._axes, self.dtype)
            part = self._array[stored].transpose(self._axes)
            fresh = getattr(self._array, "fresh", False)  # a new array, not a view
            if fresh and part.flags.c_contiguous and part.dtype.isnative:
                return part
            out = part.astype(self.dtype, order="C", copy=True)
            del part
        return out if type(out) is np.ndarray else out.view(np.ndarray)

    def cube_file(self, data: np.ndarray | None = None) -> CubeFile:
        """A :class:`ras2s.io.CubeFile` of this source (for ``like=``), with ``data`` or none."""
        return CubeFile(
            data,
            self.path,
            self.format,
            self.key,
            self.layout,
            self.metadata,
            shape=self.shape,
            dtype=self.dtype,
        )

    def __reduce__(self) -> tuple:
        return _reopen, self._opened_with

    def close(self) -> None:
        """Release the file (a closed source cannot be read)."""
        if self._array is not None:
            array, self._array = self._array, None
            array.close()

    def __enter__(self) -> CubeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._array is None else "windowed" if self.windowed else "in memory"
        return (
            f"<CubeSource {self.path} {self.format} {self.shape} {self.dtype} "
            f"layout={self.layout} {state}>"
        )


@contextlib.contextmanager
def _reading(path: Path, fmt: str):
    """Errors of a reader as one-line InputErrors naming the file (ours unchanged)."""
    try:
        yield
    except Ras2sError:
        raise
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied ({one_line(exc)})") from exc
    except Exception as exc:
        raise InputError(
            f"{path}: cannot read as {fmt} ({one_line(exc)}); the file may be corrupt or truncated"
        ) from exc


def open_cube(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    layout: str | None = None,
    max_bytes: int | None = None,
) -> CubeSource:
    """Open a hyperspectral cube file for reading, window by window where it can be.

    Parameters
    ----------
    path : str or path-like
        A ``.mat``, ``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.tif``/``.tiff``, ENVI
        ``.hdr`` file, a ``.zarr`` store, or a folder of per-band PNGs.
    key : str, optional
        Variable / dataset inside a container (.mat, .npz, .h5, .zarr group; HDF5 and
        zarr keys are paths such as ``"group/cube"``). Without it the single 3-D
        numeric array is taken. Ignored by the other formats.
    layout : {"HWB", "BHW"}, optional
        How the array is stored in the file (case-insensitive); overrides every rule.
    max_bytes : int, optional
        Memory budget: a file that must be read whole (MAT v4/v5, ``.npz``, PNG
        folder, a TIFF that cannot be windowed) and would take more is refused up
        front, naming the conversion to use. Windowed formats are never refused.

    Returns
    -------
    CubeSource
        Open until :meth:`CubeSource.close` (or the end of a ``with`` block).

    Raises
    ------
    InputError
        Missing, unreadable, corrupt, non-cube or ambiguous input, or over the budget
        (one-line message naming the file). :class:`LayoutError` (a subclass) when the
        layout is ambiguous.
    """
    p = Path(path)
    override = parse_layout(layout, p)
    fmt = input_format(p)
    with _reading(p, fmt):
        opened = _OPENERS[fmt](p, key, max_bytes)
    try:
        shape, dtype = tuple(opened.array.shape or ()), np.dtype(opened.array.dtype)
        check_cube(shape, dtype, p, opened.key)
        stored = (
            override
            or opened.layout
            or detect_layout(shape, source=str(p), convention=opened.convention)
        )
    except BaseException:
        opened.array.close()
        raise
    source = CubeSource(p, opened, stored)
    source._opened_with = (str(p), key, override, max_bytes)
    return source


def _reopen(path: str, key: str | None, layout: str | None, max_bytes: int | None) -> CubeSource:
    return open_cube(path, key=key, layout=layout, max_bytes=max_bytes)


def read_cube(
    path: str | os.PathLike, *, key: str | None = None, layout: str | None = None
) -> CubeFile:
    """Read a hyperspectral cube from a file or a PNG folder, bands first.

    :func:`open_cube`, then the whole cube read at once.

    Parameters
    ----------
    path : str or path-like
        A ``.mat``, ``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.tif``/``.tiff`` or ENVI
        ``.hdr`` file, a ``.zarr`` store, or a folder of per-band PNGs.
    key : str, optional
        Variable / dataset inside a container (.mat, .npz, .h5, .zarr group; HDF5 keys
        are full paths such as ``"group/cube"``). Without it the single 3-D numeric
        array is taken. Ignored by the other formats.
    layout : {"HWB", "BHW"}, optional
        How the array is stored in the file (case-insensitive); overrides every rule.

    Returns
    -------
    CubeFile
        ``data`` is ``(bands, H, W)`` in the file's dtype (native byte order).

    Raises
    ------
    InputError
        Missing, unreadable, corrupt, non-cube or ambiguous input (one-line message
        naming the file). :class:`LayoutError` (a subclass) when the layout is ambiguous.
    """
    with open_cube(path, key=key, layout=layout) as source:
        return source.cube_file(source.read())


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WritePlan:
    """What a format's writer is asked to make (all decided by :func:`create_cube`)."""

    shape: tuple[int, int, int]  # (bands, H, W)
    dtype: np.dtype
    key: str  # variable / dataset name (containers)
    layout: str  # stored layout
    like: CubeFile | None
    cog: bool
    max_bytes: int | None
    path: Path | None = None  # the final output, for messages


class Buffered:
    """A whole-file writer: the cube is gathered in memory, dumped at commit.

    ``dump(tmp, data, key, layout, like)`` writes the whole bands-first cube.
    """

    windowed = False

    def __init__(self, tmp: Path, plan: WritePlan, dump: Callable[..., None]) -> None:
        self.tmp = tmp
        self.plan = plan
        self.dump = dump
        self.data: np.ndarray | None = np.zeros(plan.shape, plan.dtype)

    def write(self, key: tuple, block: np.ndarray) -> None:
        """Copy ``block`` into the cube in memory."""
        self.data[key] = block

    def finish(self) -> None:
        """Write the whole cube into the temporary file (or folder)."""
        plan = self.plan
        self.dump(self.tmp, self.data, plan.key, plan.layout, plan.like)

    def close(self) -> None:
        """Let the cube in memory go."""
        self.data = None


_WRITERS: dict[str, Callable[[Path, WritePlan], Any]] = {
    "mat": lambda tmp, plan: mat_format.mat_writer(tmp, plan),
    "npy": lambda tmp, plan: npy_format.NpyWriter(tmp, plan),
    "npz": lambda tmp, plan: Buffered(tmp, plan, npy_format.write_npz),
    "h5": lambda tmp, plan: h5_format.H5Writer(tmp, plan),
    "tiff": lambda tmp, plan: tiff_format.TiffWriter(tmp, plan),
    "envi": lambda tmp, plan: envi_format.EnviWriter(tmp, plan),
    "png": lambda tmp, plan: png_format.png_writer(tmp, plan),
    "zarr": lambda tmp, plan: zarr_format.ZarrWriter(tmp, plan),
}
#: formats written whole from memory (MAT v5 is, below the budget: see mat.mat_writer)
_WHOLE = {"npz": ".npz", "png": "PNG-band folder"}


class CubeSink:
    """A cube output being written: windows in, then published whole, atomically.

    Made by :func:`create_cube`. Until :meth:`commit` the output lives in a temporary
    file (or folder) beside its final name (``.ras2s-*``); :meth:`commit` flushes it to
    the disk and gives it its name exactly as :func:`write_cube` does; :meth:`abort`
    (or an exception, Ctrl-C included, inside a ``with`` block) removes every temporary
    file and leaves the final path as it was.

    Attributes
    ----------
    path : pathlib.Path
        The final output (ENVI: the ``.hdr``; its data file is ``.img`` beside it).
    format : str
        The output's format (from its extension).
    shape : tuple of 3 int
        ``(bands, H, W)``.
    dtype : numpy.dtype
        The dtype written.
    key : str
        Variable / dataset name (containers).
    layout : str
        How the cube is stored in the file (``"HWB"``, ``"BHW"`` or ENVI's ``"HBW"``).
    windowed : bool
        True when each :meth:`write` goes to the disk; False when the cube is gathered
        in memory until :meth:`commit` (MAT v5, ``.npz``, PNG folders).

    Examples
    --------
    >>> with create_cube("out.npy", (31, 512, 512), np.float32) as sink:  # doctest: +SKIP
    ...     for r in range(0, 512, 128):
    ...         sink.write((slice(r, r + 128), slice(None)), block_of_rows(r))
    """

    def __init__(self, path: Path, fmt: str, plan: WritePlan, staged, writer) -> None:
        self.path = path
        self.format = fmt
        self.shape = plan.shape
        self.dtype = plan.dtype
        self.key = plan.key
        self.layout = plan.layout
        self.windowed = bool(getattr(writer, "windowed", True))
        self._staged = staged
        self._writer = writer
        self._state = "open"

    def write(
        self, window: Window | None, block: np.ndarray, *, bands: slice | None = None
    ) -> None:
        """Write a bands-first block at ``window``.

        Parameters
        ----------
        window : (slice, slice) or None
            ``(rows, cols)`` of the cube where the block goes (steps of 1); None: all.
        block : numpy.ndarray
            ``(bands, h, w)`` matching the window (and ``bands``), of the sink's dtype
            or one that casts to it safely (``numpy.can_cast(..., "safe")``).
        bands : slice, optional
            The bands the block holds; None: all of them.

        Raises
        ------
        ValueError
            A block whose shape does not match the window, or a dtype that would lose
            values (cast it first: integers rounded and clipped as you mean them).
        OutputError
            Writing failed (a full disk, ...): the temporaries are removed.
        """
        if self._state != "open":
            raise ValueError(f"{self.path}: the output is already {self._state}")
        rows, cols = _window(window, self.shape)
        b, _ = _axis(bands, self.shape[0], "bands")
        if {rows.step, cols.step, b.step} != {1}:
            raise ValueError(f"{self.path}: a written window must have steps of 1")
        block = np.asarray(block)
        want = (_extent(b), _extent(rows), _extent(cols))
        if block.shape != want:
            raise ValueError(
                f"{self.path}: block of shape {block.shape} for a window of shape {want} "
                "(bands, rows, cols)"
            )
        if block.dtype.newbyteorder("=") != self.dtype.newbyteorder("="):
            if not np.can_cast(block.dtype, self.dtype, "safe"):
                raise ValueError(
                    f"{self.path}: block of dtype {block.dtype} for an output of dtype "
                    f"{self.dtype}; convert it first"
                )
        block = block.astype(self.dtype, copy=False)
        try:
            self._writer.write((b, rows, cols), block)
        except BaseException as exc:
            self._abandon(exc)

    def _write_all(self, data: np.ndarray) -> None:
        """The whole cube at once (write_cube): a buffered writer keeps ``data`` uncopied."""
        if isinstance(self._writer, Buffered) and data.shape == self.shape:
            self._writer.data = data  # write_cube commits at once: nothing can change it
        else:
            self.write(None, data)

    def commit(self) -> Path:
        """Complete the output and publish it under its final name, atomically.

        Returns
        -------
        pathlib.Path
            The final path.

        Raises
        ------
        OutputError
            Writing or publishing failed (nothing is left behind), or, without
            ``force``, the final path appeared meanwhile (it is left as it is).
        """
        if self._state == "committed":
            return self.path
        if self._state != "open":
            raise ValueError(f"{self.path}: the output is already {self._state}")
        try:
            self._writer.finish()
        except BaseException as exc:
            self._abandon(exc)
        self._writer.close()
        self._state = "committed"
        self._staged.publish()
        return self.path

    def abort(self) -> None:
        """Remove every temporary file; the final path is left as it was. Idempotent."""
        if self._state != "open":
            return
        self._state = "aborted"
        with contextlib.suppress(Exception):
            self._writer.close()
        self._staged.discard()

    def _abandon(self, exc: BaseException) -> None:
        self._state = "aborted"
        with contextlib.suppress(Exception):
            self._writer.close()
        self._staged.fail(exc)

    def __enter__(self) -> CubeSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.abort()

    def __repr__(self) -> str:
        return f"<CubeSink {self.path} {self.format} {self.shape} {self.dtype} {self._state}>"


def create_cube(
    path: str | os.PathLike,
    shape: tuple[int, int, int],
    dtype: np.dtype | type | str,
    *,
    like: CubeFile | None = None,
    key: str | None = None,
    layout: str | None = None,
    force: bool = False,
    cog: bool = False,
    max_bytes: int | None = None,
) -> CubeSink:
    """Create a cube output to be written window by window, then published atomically.

    Parameters
    ----------
    path : str or path-like
        Output file; its extension picks the format (see :data:`ras2s.io.FORMATS`). A
        path with no extension (or an existing folder) is a folder of per-band PNGs.
    shape : tuple of 3 int
        ``(bands, H, W)``.
    dtype : numpy dtype
        Any real numeric dtype (PNG: uint8 or uint16 only), written unchanged.
    like, key, layout, force, cog
        As in :func:`write_cube`: the output gets exactly what ``write_cube`` would
        give it (headers, metadata, GeoTIFF tags, TIFF form, names).
    max_bytes : int, optional
        Memory budget. A format written whole from memory (``.npz``, PNG folder) is
        refused up front when the cube would take more; a ``.mat`` output is then
        written as MATLAB 7.3 (window by window) instead of v5.

    Returns
    -------
    CubeSink
        Write with :meth:`CubeSink.write`, then :meth:`CubeSink.commit` (a ``with``
        block commits on normal exit and aborts on an exception).

    Raises
    ------
    OutputError
        As :func:`write_cube` (before any work), or over the budget.
    """
    p = Path(path)
    fmt = output_format(p)
    try:
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
    except (TypeError, ValueError):
        raise OutputError(
            f"{p}: cannot write an array of shape {shape} {dtype}; "
            "expected a non-empty real numeric (bands, H, W) cube"
        ) from None
    if len(shape) != 3 or min(shape) <= 0 or not is_real_numeric(dtype):
        raise OutputError(
            f"{p}: cannot write an array of shape {shape} {dtype}; "
            "expected a non-empty real numeric (bands, H, W) cube"
        )
    _check_cog(p, fmt, cog)
    check_output(p, dtype, force=force)
    plan = _plan(p, fmt, shape, dtype, like, key, layout, cog, max_bytes)
    nbytes = nbytes_of(shape, dtype)
    if fmt in _WHOLE and max_bytes is not None and nbytes > max_bytes:
        raise OutputError(
            f"{p}: a {_WHOLE[fmt]} output is written whole from memory ({gib(nbytes)}), over "
            f"the memory budget of {gib(int(max_bytes))}; write .npy, .h5, .tif, ENVI "
            "(.hdr) or .zarr to write it window by window"
        )
    if fmt in ("png", "zarr"):
        staged: Any = StagedFolder(p, force=force)
    else:
        staged = StagedFile(p, (".img",) if fmt == "envi" else (), force=force)
    try:
        writer = _WRITERS[fmt](staged.tmp, plan)
    except BaseException as exc:
        staged.fail(exc)
    return CubeSink(p, fmt, plan, staged, writer)


def _check_cog(p: Path, fmt: str, cog: bool) -> None:
    if cog and fmt != "tiff":
        raise OutputError(f"{p}: a Cloud-Optimized GeoTIFF needs a .tif or .tiff output")


def _plan(
    p: Path,
    fmt: str,
    shape: tuple,
    dtype: np.dtype,
    like: CubeFile | None,
    key: str | None,
    layout: str | None,
    cog: bool,
    max_bytes: int | None,
) -> WritePlan:
    """Where and how the cube is stored: layout, variable name (the ``like`` rules)."""
    same = like is not None and like.format == fmt
    if fmt in ("npy", "npz", "h5"):
        stored = parse_layout(layout, p) or (like.layout if same else "BHW")
    elif fmt == "tiff":
        stored = "HWB" if same and like.layout == "HWB" else "BHW"
    elif fmt == "envi":
        stored = like.layout if same else "BHW"
    else:
        stored = "HWB" if fmt == "mat" else "BHW"
    name = key or (like.key if same and like.key else None) or "data"
    if fmt == "mat" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name):
        raise OutputError(f"{p}: {name!r} is not a valid MATLAB variable name; pass --key")
    return WritePlan(shape, dtype, name, stored, like, cog, max_bytes, p)


def write_cube(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    like: CubeFile | None = None,
    key: str | None = None,
    layout: str | None = None,
    force: bool = False,
    cog: bool = False,
) -> Path:
    """Write a bands-first cube in the format given by the output path, atomically.

    :func:`create_cube`, one write of the whole cube, :meth:`CubeSink.commit`.

    Parameters
    ----------
    path : str or path-like
        Output file; its extension picks the format (see :data:`ras2s.io.FORMATS`). A
        path with no extension (or an existing folder) is written as a folder of
        per-band PNGs; a ``.zarr`` path as a zarr store (a folder).
    data : numpy.ndarray
        ``(bands, H, W)``, any real numeric dtype (PNG: uint8 or uint16 only). Written
        with its dtype unchanged.
    like : CubeFile, optional
        The input this cube came from: its key, layout (same format only), ENVI header
        and interleave, and PNG file names are reused; a TIFF keeps its GeoTIFF tags,
        planar configuration, tiling (or rows per strip), compression and predictor
        (a lossy or unavailable compression becomes deflate); a zarr output carries its
        wavelengths, band names, bbl and nodata as attributes.
    key : str, optional
        Variable / dataset name (.mat, .npz, .h5, .zarr). Default: ``like.key`` when
        ``like`` has the output's format, else ``"data"``.
    layout : {"HWB", "BHW"}, optional
        Stored layout for .npy, .npz and .h5 (default: ``like.layout`` when ``like`` has
        the same format, else BHW). The other formats follow their convention: .mat
        HWB; TIFF bands first (or ``like``'s layout); ENVI ``like``'s interleave or bsq;
        zarr bands first.
    force : bool
        Overwrite an existing output (atomically: readers see the old file or the new
        one). Without it, an output that appears while this one is written (another
        process racing for the same name) is left alone and :class:`OutputError` raised.
    cog : bool
        TIFF output only: write a Cloud-Optimized GeoTIFF (tiled 256 or 512, deflate,
        internal overviews, IFDs before data; :func:`ras2s.tiffform.write_cog`).

    Returns
    -------
    pathlib.Path
        The written file (ENVI: the ``.hdr``; its data file is ``.img`` beside it).

    Raises
    ------
    OutputError
        Unknown extension, bad data, existing output without ``force``, missing or
        read-only folder, or a failure while writing (nothing is left behind then).
    """
    p = Path(path)
    fmt = output_format(p)
    data = np.asarray(data)
    if data.ndim != 3 or data.size == 0 or not is_real_numeric(data.dtype):
        raise OutputError(
            f"{p}: cannot write an array of shape {data.shape} {data.dtype}; "
            "expected a non-empty real numeric (bands, H, W) cube"
        )
    _check_cog(p, fmt, cog)
    with create_cube(
        p, data.shape, data.dtype, like=like, key=key, layout=layout, force=force, cog=cog
    ) as sink:
        sink._write_all(data)
    return p


# --------------------------------------------------------------------------- metadata


def cube_nodata(cube: CubeFile | CubeSource) -> float | None:
    """The nodata value a file declares: GDAL_NODATA (TIFF), ENVI ``data ignore value``, zarr.

    Returns None when the file declares none (or an unparsable one).
    """
    text: object = None
    if cube.format == "tiff":
        for code, _dtype, _count, value in cube.metadata.get("geotiff_tags", []):
            if code == 42113:
                text = value
    elif cube.format == "envi":
        text = cube.metadata.get("data ignore value")
    elif cube.format == "zarr":
        text = cube.metadata.get("nodata")
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        return None if text is None else float(str(text).strip().strip("\x00"))
    except ValueError:
        return None


def bad_bands(cube: CubeFile | CubeSource) -> list[int]:
    """0-based indices of the bands marked bad (``bbl`` = 0: ENVI header, zarr); else []."""
    bbl = cube.metadata.get("bbl") if cube.format in ("envi", "zarr") else None
    if not isinstance(bbl, list) or len(bbl) != cube.shape[0]:
        return []
    out = []
    for i, flag in enumerate(bbl):
        try:
            if float(flag) == 0:
                out.append(i)
        except (TypeError, ValueError):
            continue
    return out
