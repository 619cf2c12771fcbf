"""The one exception family of ras2s.

Every error a user can cause (bad file, bad shape, bad option) is a :class:`Ras2sError`
whose message names the file or array, what was found and what was expected. The CLI
prints it as one line on stderr and exits with code 2.
"""

from __future__ import annotations


class Ras2sError(Exception):
    """Base class of every user-facing ras2s error."""


class InputError(Ras2sError, ValueError):
    """An input file or array is missing, unreadable, or not a usable cube."""


class LayoutError(InputError):
    """The spectral axis of a cube cannot be decided without a guess."""


class OutputError(Ras2sError):
    """An output cannot be written (exists without --force, folder not writable, ...)."""


class WeightsError(Ras2sError):
    """Weights are unknown, unavailable, corrupt, or do not match the network."""
