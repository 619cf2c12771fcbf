"""Progress for a terminal and for a log.

On a terminal tqdm redraws one line in place. When stderr is a file or a pipe (a batch
job under SLURM, ``nohup``, ``2> log``) that redrawing would be one endless line of
carriage returns, so :func:`progress_setting` asks tqdm instead for a plain line at most
every ``interval`` seconds, nothing at all for a run shorter than that, and the final
count at the end, each in tqdm's form: ``denoise:  P%|bar| done/total [elapsed<ETA, rate]``.
"""

from __future__ import annotations

import sys
from typing import Any

#: Seconds between two progress lines in a log (and before the first one).
LOG_INTERVAL = 60.0


class LogLines:
    """A file for tqdm that writes each status as one line on ``sys.stderr``.

    tqdm writes a carriage return and the status, padded with spaces, at every refresh;
    the carriage returns and padding are dropped, blank writes (a bar cleared) skipped.
    ``sys.stderr`` is looked up at every write, so the object pickles and follows a
    redirected stderr.
    """

    def write(self, text: str) -> int:
        """Write ``text`` without carriage returns or padding, as one line; skip blanks."""
        line = text.replace("\r", "").strip()
        if line:
            sys.stderr.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        """Flush ``sys.stderr``."""
        sys.stderr.flush()


def progress_setting(quiet: bool, interval: float = LOG_INTERVAL) -> bool | dict[str, Any]:
    """What ``progress=`` to give the denoising functions from the command line.

    ``False`` when ``quiet``; ``True`` (a redrawn bar) when stderr is a terminal; else
    tqdm keyword arguments for plain log lines every ``interval`` seconds (none for a
    run shorter than that), the last one kept.
    """
    if quiet:
        return False
    if sys.stderr.isatty():
        return True
    return {
        "file": LogLines(),
        "mininterval": interval,
        # tqdm's monitor thread forces a refresh every maxinterval (10 s) once a line is
        # older than that: with the default a slow loop printed pairs of lines 10 s apart
        "maxinterval": interval,
        "delay": interval,
        "leave": True,
    }
