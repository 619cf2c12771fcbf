"""The one exception family of ras2s.

Every error a user can cause (bad file, bad shape, bad option) is a :class:`Ras2sError`
whose message names the file or array, what was found and what was expected. The CLI
prints it as one line on stderr and exits with code 2. :class:`Terminated` is SIGTERM
turned into an interrupt (exit code 143), see :func:`sigterm_raises`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Ras2sError(Exception):
    """Base class of every user-facing ras2s error."""


class InputError(Ras2sError, ValueError):
    """An input file or array is missing, unreadable, or not a usable cube."""


class LayoutError(InputError):
    """The spectral axis of a cube cannot be decided without a guess."""


class DivergenceError(InputError):
    """The network's output is not plausible for its input (NaN/Inf, or far out of range).

    ``detail`` says what was seen in a few words (``"output [-73.1, 42.3] for input
    [-0.0108, 2.29]"``), for the one-line warning of a fallback.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


class FallbackWarning(UserWarning):
    """The network diverged and :func:`ras2s.denoise` recovered in a safer setting.

    The message is one line saying what failed and what was used instead.
    """


class OutputError(Ras2sError):
    """An output cannot be written (exists without --force, folder not writable, ...)."""


class WeightsError(Ras2sError):
    """Weights are unknown, unavailable, corrupt, or do not match the network."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (temporary files removed).

    A :class:`KeyboardInterrupt`, so that everything that already cleans up on Ctrl-C
    (``io.atomic_path``, ``io.write_atomically``, worker pools) does so on SIGTERM too.
    """

    signal_number = 15


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only).

    The first SIGTERM raises; a second one during the clean-up is ignored, so that the
    clean-up finishes. The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
