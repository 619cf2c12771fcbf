"""Writes that survive a crash, a full disk and a second process: temp + fsync + rename.

Every output ras2s writes goes through a temporary beside its final name (``.ras2s-*``)
that is flushed to the disk before it is renamed onto that name, and the folder after.
A crash or a power loss leaves the old file or the complete new one; a failure removes
the temporary and says why in one line (a full disk, a file-size limit and a quota in
plain words). Without ``force`` an output is published with ``os.link`` (never over a
file that appeared meanwhile: of two processes racing for one name exactly one wins);
with it, with ``os.replace``. A folder (PNG bands, a zarr store) is swapped in whole.

:class:`StagedFile` and :class:`StagedFolder` are the two halves held apart (create the
temporary now, publish it later), for :class:`ras2s.io.CubeSink`; :func:`atomic_path`
and :func:`write_atomically` wrap them for writers that finish in one call.
:class:`FolderLock` lets one process at a time write into a folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ras2s.errors import OutputError, Ras2sError

from .base import one_line

try:
    import resource
except ImportError:  # pragma: no cover - Windows: no file-size limits to recognise
    resource = None  # type: ignore[assignment]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: errno -> what it means to someone whose write stopped half way.
_NO_ROOM = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file-size limit (ulimit -f) was reached",
    errno.EDQUOT: "the disk quota is exceeded",
}
# h5py and some C writers report errno only in their message text
_NO_ROOM_TEXT = {
    "No space left on device": errno.ENOSPC,
    "File too large": errno.EFBIG,
    "Disk quota exceeded": errno.EDQUOT,
    "errno = 28": errno.ENOSPC,
    "errno = 27": errno.EFBIG,
    "errno = 122": errno.EDQUOT,
}


def _no_room(exc: BaseException) -> int | None:
    """ENOSPC, EFBIG or EDQUOT when ``exc`` (or what caused it) is a full disk or limit."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            return exc.errno
        text = str(exc)
        for needle, code in _NO_ROOM_TEXT.items():
            if needle in text:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def _largest(paths: Iterable[Path]) -> int:
    """Bytes of the largest regular file among ``paths`` (folders searched), 0 if none."""
    sizes = [0]
    for p in paths:
        with contextlib.suppress(OSError):
            if p.is_dir():
                sizes += [f.stat().st_size for f in p.rglob("*") if f.is_file()]
            else:
                sizes.append(p.stat().st_size)
    return max(sizes)


def _out_of_room(exc: BaseException, folder: Path, written: int) -> int | None:
    """Why a write failed for lack of room: from the error, else from the limits.

    Some writers report a short write without its errno (numpy: "76800 requested and
    16352 written"). Then, for an ``OSError``, the file that was being written
    (``written`` bytes) is compared with the file-size limit, and the folder's free
    space with nothing.
    """
    code = _no_room(exc)
    if code is not None or not _in_chain(exc, OSError):
        return code
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and written >= soft:
            return errno.EFBIG
    with contextlib.suppress(OSError):
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < 2**20:
            return errno.ENOSPC
    return None


def _in_chain(exc: BaseException | None, kind: type) -> bool:
    """True when ``exc`` or an exception that caused it is a ``kind``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _fail(final: Path, exc: BaseException, written: int = 0) -> None:
    """Re-raise ``exc`` as a one-line OutputError (Ras2sError and interrupts unchanged).

    A full disk, a file-size limit (``RLIMIT_FSIZE``, ``ulimit -f``) or a quota says so
    in plain words: the temporary file is gone and ``final`` is as it was. ``written``:
    the size the temporary had reached (to recognise a short write at the limit).
    """
    if isinstance(exc, Ras2sError) or not isinstance(exc, Exception):
        raise exc
    code = _out_of_room(exc, final.parent, written)
    if code is not None:
        raise OutputError(
            f"{final}: writing failed ({os.strerror(code)}: {_NO_ROOM[code]}); the partial "
            "file was removed, nothing was written and an existing file is unchanged"
        ) from exc
    raise OutputError(f"{final}: writing failed ({one_line(exc)}); nothing was written") from exc


def _fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to the disk: its data, or its entries."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder: nothing to flush there
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` (recursively), then each folder's entries."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


def _claim(tmp: Path, final: Path) -> None:
    """Publish ``tmp`` as ``final`` only if ``final`` does not exist, atomically.

    ``os.link`` fails with EEXIST when ``final`` appeared meanwhile, so of two processes
    racing for one output exactly one wins; the other gets :class:`OutputError`. On a
    file system without hard links, falls back to a check and a rename (not atomic).
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise OutputError(
            f"{final}: appeared while this output was being written (another ras2s run?); "
            "it was left as it is; pass --force to overwrite it"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(final):
            raise OutputError(
                f"{final}: appeared while this output was being written; "
                "pass --force to overwrite it"
            ) from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


def scratch_file(folder: Path, suffix: str = ".scratch") -> Path:
    """A new empty temporary file in ``folder`` (``.ras2s-*``); the caller removes it."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".ras2s-", suffix=suffix)
    os.close(fd)
    return Path(name)


class StagedFile:
    """A temporary file beside ``final`` (and companions), published later in one step.

    ``companions`` are suffixes of files written beside the temporary (ENVI's ``.img``),
    published first so that the header never names missing data. :meth:`publish`
    flushes each temporary, renames it onto its final name (``force``: ``os.replace``;
    else :func:`_claim`, never over a file that appeared meanwhile) and flushes the
    folder; :meth:`fail` removes the temporaries and raises the error as one line.
    """

    def __init__(self, final: Path, companions: tuple = (), *, force: bool = True) -> None:
        self.final = final
        self.force = force
        self.tmp = scratch_file(final.parent, final.suffix)
        self.tmps = [self.tmp.with_suffix(s) for s in companions] + [self.tmp]
        self.finals = [final.with_suffix(s) for s in companions] + [final]

    def publish(self) -> None:
        """Flush the temporaries, give them their final names, flush the folder."""
        published: list[Path] = []
        try:
            for t in self.tmps:
                os.chmod(t, 0o666 & ~_umask())
                _fsync_path(t)  # the data is on the disk before any name points at it
            for t, f in zip(self.tmps, self.finals, strict=True):
                if self.force:
                    os.replace(t, f)
                else:
                    _claim(t, f)
                    published.append(f)
            _fsync_path(self.final.parent)  # the new name itself survives a power loss
        except BaseException as exc:
            if len(published) < len(self.finals):  # no-clobber, half published: take ours back
                for f in published:
                    with contextlib.suppress(OSError):
                        f.unlink()
            self.fail(exc)

    def discard(self) -> int:
        """Remove the temporaries (what is left of them); the largest one's size."""
        written = _largest(self.tmps)
        for t in self.tmps:
            with contextlib.suppress(OSError):
                t.unlink()
        return written

    def fail(self, exc: BaseException) -> None:
        """Remove the temporaries and raise ``exc`` as :func:`_fail` does."""
        _fail(self.final, exc, self.discard())


class StagedFolder:
    """A temporary folder beside ``final``, put in place whole later (PNG bands, zarr).

    Over an existing folder (``force``) the two are swapped atomically where the kernel
    can (``RENAME_EXCHANGE``); elsewhere the old folder is moved aside first. Without
    ``force`` the rename fails if ``final`` appeared meanwhile with content.
    """

    def __init__(self, final: Path, *, force: bool = True) -> None:
        self.final = final
        self.force = force
        self.tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".ras2s-"))

    def publish(self) -> None:
        """Flush the folder's files and entries, put it in place, flush the parent."""
        final, tmp = self.final, self.tmp
        backup = tmp.with_name(tmp.name + "-old")
        swapped = False
        try:
            os.chmod(tmp, 0o777 & ~_umask())
            _fsync_tree(tmp)
            if os.path.lexists(final) and not self.force:
                raise OutputError(
                    f"{final}: appeared while this output was being written (another ras2s "
                    "run?); it was left as it is; pass --force to overwrite it"
                )
            if final.is_dir() and not final.is_symlink():
                swapped = _exchange(tmp, final)
                if not swapped:
                    os.replace(final, backup)
            if not swapped:
                try:
                    os.rename(tmp, final)
                except OSError as exc:  # a folder with content appeared meanwhile
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                        raise
                    raise OutputError(
                        f"{final}: appeared while this output was being written "
                        "(another ras2s run?); it was left as it is"
                    ) from None
            _fsync_path(final.parent)
        except BaseException as exc:
            if backup.exists() and not final.exists():
                os.replace(backup, final)
            self.fail(exc)
        old = tmp if swapped else backup  # after a swap the old folder sits at tmp
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old.exists():
            old.unlink()

    def discard(self) -> int:
        """Remove the temporary folder (ours, or the old one after a swap); its size."""
        written = _largest([self.tmp])
        shutil.rmtree(self.tmp, ignore_errors=True)
        return written

    def fail(self, exc: BaseException) -> None:
        """Remove the temporary folder and raise ``exc`` as :func:`_fail` does."""
        _fail(self.final, exc, self.discard())


def _atomic_file(
    final: Path, write: Callable[[Path], None], companions: tuple = (), *, force: bool = True
) -> None:
    """Write through a temporary file beside ``final``; flush it; publish it; flush the folder."""
    staged = StagedFile(final, companions, force=force)
    try:
        write(staged.tmp)
    except BaseException as exc:
        staged.fail(exc)
    staged.publish()


def _atomic_dir(final: Path, write: Callable[[Path], None], *, force: bool = True) -> None:
    """Fill a temporary folder, flush it, then put it in place whole (see StagedFolder)."""
    staged = StagedFolder(final, force=force)
    try:
        write(staged.tmp)
    except BaseException as exc:
        staged.fail(exc)
    staged.publish()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, force: bool = True) -> Iterator[Path]:
    """A temporary file beside ``final``, renamed onto it when the block succeeds.

    For writers that fill a file over time (a stream, several blocks): on any failure
    the temporary file is removed, ``final`` is left as it was, and the error is raised
    as a one-line :class:`OutputError` (ras2s errors and interrupts unchanged). The file
    is flushed to the disk before the rename and its folder after it, so a crash leaves
    the old file or the whole new one. ``force=False`` refuses to replace a ``final``
    that exists by then (another process won the race).

    Examples
    --------
    >>> with atomic_path("out.bin") as tmp:  # doctest: +SKIP
    ...     tmp.write_bytes(b"...")
    """
    staged = StagedFile(Path(final), force=force)
    try:
        yield staged.tmp
    except BaseException as exc:
        staged.fail(exc)
    staged.publish()


def write_atomically(
    final: str | os.PathLike,
    write: Callable[[Path], object],
    *,
    folder: bool = False,
    force: bool = True,
) -> Path:
    """Call ``write(tmp)`` for a temporary file (or folder) beside ``final``, then rename.

    The temporary gets a normal mode and is flushed to the disk (``fsync``) before the
    rename, and the parent folder after it: a crash or power loss leaves the old
    ``final`` or the complete new one, never a partial file. On any failure the
    temporary is removed, ``final`` is left as it was, and the error is raised as a
    one-line :class:`OutputError` (a full disk or file-size limit says so). With
    ``folder=True``, ``write`` fills a temporary folder that replaces ``final`` whole.
    ``force=False`` never replaces a ``final`` that exists when the write ends.
    """
    final = Path(final)
    if folder:
        _atomic_dir(final, write, force=force)
    else:
        _atomic_file(final, write, force=force)
    return final


def write_text_atomically(final: str | os.PathLike, text: str, *, force: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``final`` through :func:`write_atomically`."""
    return write_atomically(final, lambda tmp: tmp.write_text(text, encoding="utf-8"), force=force)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the call is not available (then the caller renames in two steps).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange):
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            return False
        raise OSError(code, os.strerror(code), str(b))
    return True


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class FolderLock:
    """An exclusive advisory lock (``flock``) on a folder, for one process at a time.

    Locks the folder itself, so no lock file is left behind. ``wait=False`` refuses at
    once with :class:`OutputError` when another process holds it (``what`` says what
    the lock guards, for the message); ``wait=True`` blocks until it is free. Released by
    :meth:`release`, at the end of a ``with`` block, or when the process ends (even
    killed). Where ``fcntl`` is missing (Windows) it locks nothing.

    Examples
    --------
    >>> with FolderLock("results/", what="ras2s evaluate"):  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, folder: str | os.PathLike, *, wait: bool = True, what: str = "") -> None:
        self.folder = Path(folder)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux or macOS
            return
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{self.folder}: another process is writing here ({what or 'ras2s'}); "
                "wait for it to finish or use another output folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the next process in (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
