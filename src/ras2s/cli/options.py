"""What every ``ras2s`` command shares: its options (each declared once) and error handler.

A command module takes its options from here (``@options.force``) and wraps its body in
:func:`handle_errors`, so that every command reports a user error the same way: one line
on stderr, exit code 2, a traceback only with ``ras2s --debug``.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from ..errors import InputError, OutputError, Ras2sError, Terminated, sigterm_raises
from ..precision import describe_auto

__all__ = [
    "Group",
    "SizeType",
    "denoised",
    "device",
    "fail",
    "force",
    "handle_errors",
    "key",
    "keys",
    "layout",
    "max_memory",
    "nodata",
    "output",
    "output_folder",
    "parse_size",
    "band_window",
    "precision",
    "quiet",
    "set_threads",
    "skip_bands",
    "threads",
    "weights",
]

# ------------------------------------------------------------------------- errors
#: Optional modules -> the extra that installs them (for the missing-extra hint).
EXTRAS: dict[str, str] = {
    "lightning": "train",
    "yaml": "train",
    "matplotlib": "report",
    "bm3d": "baselines",
    "bm4d": "baselines",
    "pywt": "baselines",
    "skimage": "baselines",
    "dask": "scale",
    "distributed": "scale",
    "xarray": "scale",
}


def fail(message: str, code: int = 2) -> None:
    """Print ``ras2s: error: message`` on stderr and exit with ``code``."""
    click.echo(f"ras2s: error: {message}", err=True)
    sys.exit(code)


def missing_extra_hint(err: ImportError) -> str:
    """The error, with ``pip install 'ras2s[extra]'`` when an optional module is missing."""
    top = (getattr(err, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"{err}"
    return f"{err}; install the {extra} extra: pip install 'ras2s[{extra}]'"


def handle_errors(command: Callable) -> Callable:
    """Turn ras2s errors into one line and exit code 2 unless ``--debug`` was given.

    A missing optional module (an extra not installed) is a user error too: the line
    names the extra to install. Ctrl-C exits with 130 and SIGTERM, which raises like
    Ctrl-C so that temporary files are removed, with 143. Any other exception is a bug:
    one line, exit code 1.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug", False)
        with sigterm_raises():
            if debug:
                return command(*args, **kwargs)
            try:
                return command(*args, **kwargs)
            except Ras2sError as err:
                fail(str(err))
            except ImportError as err:
                fail(missing_extra_hint(err))
            except Terminated:
                fail("terminated (SIGTERM); no partial output was left", code=143)
            except KeyboardInterrupt:
                fail("interrupted; no partial output was left", code=130)
            except Exception as err:  # a bug: still one line, but say how to see more
                fail(f"internal error: {type(err).__name__}: {err} (rerun with --debug)", code=1)

    return wrapper


class Group(click.Group):
    """The ``ras2s`` group: click's usage errors as one line too (``ras2s: error: ...``).

    Click prints a usage error as three lines (usage, hint, error); every ras2s error is
    one line on stderr with exit code 2, so this one is too, and names the help to read.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command; in standalone mode, a usage error is one line and exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as err:
            if isinstance(err, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                err.show()  # a bare group: its help, as click prints it
                sys.exit(err.exit_code)
            command = err.ctx.command_path if err.ctx is not None else "ras2s"
            fail(f"{err.format_message()} (see '{command} --help')", code=err.exit_code)
        except click.ClickException as err:
            fail(err.format_message(), code=err.exit_code)
        except click.Abort:
            fail("aborted", code=1)
        sys.exit(result if isinstance(result, int) else 0)


# -------------------------------------------------------------------------- sizes
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"2G"``, ``"1.5GiB"``, ``"512M"``, ``"1000000"`` -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size like 2G, 512M or 1.5GiB")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "bkmgt".index((unit or "b").lower()))


class SizeType(click.ParamType):
    """A memory size option (``2G``, ``512M``)."""

    name = "size"

    def convert(self, value, param, ctx):  # noqa: D102
        try:
            size = value if isinstance(value, int) else parse_size(value)
        except click.BadParameter as err:
            self.fail(str(err.message), param, ctx)
        if size <= 0:
            self.fail(f"{value!r} is not a positive size (e.g. 512M, 2G)", param, ctx)
        return size


# ------------------------------------------------------------------------ options
key = click.option(
    "--key",
    default=None,
    help="Variable/dataset inside a .mat/.npz/.h5 file (default: the only 3-D one).",
)
keys = click.option(
    "--key",
    "keys",
    multiple=True,
    help="Variable inside container files: KEY for all, or IMAGE=KEY per image "
    "(repeatable; IMAGE is the file name, stem or path), e.g. --key Samson=SamSon.",
)
layout = click.option(
    "--layout",
    type=click.Choice(["HWB", "BHW"], case_sensitive=False),
    default=None,
    help="Force the axis order of the stored array: HWB (bands last) or BHW (bands first).",
)
force = click.option("--force", is_flag=True, help="Overwrite existing outputs.")
nodata = click.option(
    "--nodata",
    type=float,
    default=None,
    help="Value of missing pixels (e.g. -9999, nan); default: the file's GDAL_NODATA or "
    "ENVI 'data ignore value'. Left out of the statistics and returned unchanged.",
)


def _band_list(ctx, param, value):
    if value is None:
        return None
    from ..inference import parse_band_list

    try:
        parse_band_list(value)
    except InputError as err:
        raise click.BadParameter(str(err), ctx, param) from None
    return value


skip_bands = click.option(
    "--skip-bands",
    default=None,
    metavar="LIST",
    callback=_band_list,
    help="Bad bands, 0-based, e.g. 0-4,103-112: returned unchanged and not fed to the "
    "network (added to the bands an ENVI bbl marks 0).",
)
quiet = click.option("-q", "--quiet", is_flag=True, help="No progress bars or messages.")


def output(help: str, **kwargs) -> Callable:  # noqa: A002 - click's own word
    """``-o/--output``: the one name of every command's output (its help says what it is)."""
    return click.option("-o", "--output", help=help, **kwargs)


def max_memory(help: str) -> Callable:  # noqa: A002 - click's own word
    """``--max-memory SIZE`` (default 2G) with ``help``."""
    return click.option("--max-memory", type=SizeType(), default="2G", show_default=True, help=help)


weights = click.option(
    "--weights",
    default="default",
    show_default=True,
    help="'default' (shipped), 'official' (authors' checkpoint) or a checkpoint path.",
)
device = click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
threads = click.option("--threads", type=int, default=None, help="CPU threads for PyTorch.")
precision = click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Arithmetic of the network: fp32 (exact), bf16 (faster where the CPU or GPU "
    "computes it natively, about 0.13 dB lower MPSNR), or auto: the fastest that keeps "
    f"within 0.05 dB of fp32 ({describe_auto('cpu')}).",
)


class BandWindowType(click.ParamType):
    """``--band-window``: ``auto``, ``none`` (or 0), or a number of bands."""

    name = "auto|none|N"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text in ("none", "0"):
            return None
        try:
            bands = int(text)
        except ValueError:
            self.fail(f"{value!r} is not auto, none or a number of bands", param, ctx)
        if bands < 3:
            self.fail(f"a band window needs at least 3 bands, got {bands}", param, ctx)
        return bands


band_window = click.option(
    "--band-window",
    type=BandWindowType(),
    default="auto",
    show_default=True,
    help="Bands per network run: cubes with more bands are denoised in overlapping "
    "windows of that many bands, blended. auto: what the weights' card asks for (the "
    "shipped default and the authors' weights: the whole cube; weights exported from a "
    "run on short band sequences: that length); none: the whole cube at once.",
)


def tile_workers_value(value: str) -> int | str:
    """``--tile-workers``: ``"auto"`` or an integer >= 1."""
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise click.BadParameter(f"expected auto or an integer >= 1, got {value!r}")
    return number


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (``None``: PyTorch's default), refusing values below 1."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _parse_denoised(ctx, param, items: tuple[str, ...]) -> dict[str, str]:
    """``NAME=PATH`` items -> ``{name: path}``; names unique and not clean/noisy."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise click.BadParameter(f"{item!r} is not NAME=PATH", param_hint="--denoised")
        if name in out or name in ("clean", "noisy"):
            raise click.BadParameter(
                f"name {name!r} is used twice or reserved", param_hint="--denoised"
            )
        out[name.strip()] = path.strip()
    return out


def denoised(help_text: str) -> Callable:
    """``--denoised NAME=PATH`` (repeatable), parsed to ``{name: path}``."""
    return click.option(
        "--denoised",
        "denoised",
        multiple=True,
        metavar="NAME=PATH",
        callback=_parse_denoised,
        help=help_text,
    )


def output_folder(output: str, names: Sequence[str], force: bool) -> Path:
    """The output folder ``output`` as a Path, checked before any work.

    :class:`OutputError` when it exists and is not a folder, or already holds one of
    ``names`` without ``force``.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise OutputError(f"{out} already holds {', '.join(existing)}; pass --force to overwrite")
    return out
