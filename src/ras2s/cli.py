"""The ``ras2s`` command: a thin layer over the Python API.

Every user error (a :class:`~ras2s.errors.Ras2sError` or a bad option) is printed as one
line on stderr with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import click

from . import __version__
from .errors import InputError, OutputError, Ras2sError

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
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except click.BadParameter as err:
            self.fail(str(err.message), param, ctx)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"ras2s: error: {message}", err=True)
    sys.exit(code)


def handle_errors(command: Callable) -> Callable:
    """Turn ras2s errors into one line and exit code 2 unless ``--debug`` was given."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug", False)
        if debug:
            return command(*args, **kwargs)
        try:
            return command(*args, **kwargs)
        except Ras2sError as err:
            _fail(str(err))
        except KeyboardInterrupt:
            _fail("interrupted; no partial output was written", code=130)
        except Exception as err:  # a bug: still one line, but say how to see more
            _fail(f"internal error: {type(err).__name__}: {err} (rerun with --debug)", code=1)

    return wrapper


# Options shared by several subcommands.
key_option = click.option(
    "--key",
    default=None,
    help="Variable/dataset inside a .mat/.npz/.h5 file (default: the only 3-D one).",
)
layout_option = click.option(
    "--layout",
    type=click.Choice(["HWB", "BHW"], case_sensitive=False),
    default=None,
    help="Force the axis order of the stored array: HWB (bands last) or BHW (bands first).",
)
force_option = click.option("--force", is_flag=True, help="Overwrite existing outputs.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ras2s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """RAS2S hyperspectral denoising."""


def _expand_inputs(inputs: tuple[str, ...]) -> list[Path]:
    from .io import FORMATS, is_png_cube_folder

    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir() and not is_png_cube_folder(path):
            found = sorted(
                p
                for p in path.iterdir()
                if (p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith("."))
                or (p.is_dir() and is_png_cube_folder(p))
            )
            if not found:
                raise InputError(f"{path}: folder holds no cube files ({', '.join(FORMATS)})")
            files.extend(found)
        else:
            files.append(path)
    return files


def _output_for(source: Path, output: str | None, many: bool, suffix: str) -> Path:
    from .io import default_output_path

    default = default_output_path(source, suffix=suffix)
    if output is None:
        return default
    out = Path(output)
    if many or out.is_dir():
        return out / default.name
    return out


def _check_output(path: Path, force: bool) -> None:
    import os

    if path.exists() and not force:
        raise OutputError(f"{path} already exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: output folder {parent} is not writable")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output file (one input) or folder (several).")
@click.option(
    "--weights",
    default="default",
    show_default=True,
    help="'default' (shipped), 'official' (authors' checkpoint) or a checkpoint path.",
)
@click.option("--download", is_flag=True, help="Allow downloading the official weights.")
@key_option
@layout_option
@click.option(
    "--tile", type=int, default=None, help="Tile side in pixels (default: from --max-memory)."
)
@click.option("--overlap", type=int, default=None, help="Tile overlap in pixels (default 32).")
@click.option(
    "--max-memory",
    type=SizeType(),
    default="2G",
    show_default=True,
    help="Memory budget for input, output and one tile's network memory.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--threads", type=int, default=None, help="CPU threads for PyTorch.")
@click.option(
    "--nan-policy",
    type=click.Choice(["error", "fill"]),
    default="error",
    show_default=True,
    help="Reject NaN/Inf, or fill them with their band's mean.",
)
@click.option(
    "--normalise",
    type=click.Choice(["minmax", "percentile", "none"]),
    default="minmax",
    show_default=True,
    help="Map the cube to [0, 1] by its min/max (paper), its 0.5/99.5 percentiles "
    "(robust to outliers and strong noise), or not at all (already normalised).",
)
@click.option(
    "--suffix", default="_denoised", show_default=True, help="Default output name suffix."
)
@click.option(
    "--method",
    default="ras2s",
    show_default=True,
    help="ras2s, or a classical baseline: bm4d, bm3d, tv, wavelet, hyres (needs ras2s[baselines]).",
)
@click.option(
    "--sigma",
    type=float,
    default=None,
    help="Noise sigma for baselines on the paper's 0-255 scale (30 means 30/255); "
    "default: estimated per band.",
)
@click.option(
    "--preview",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a before/after false-colour PNG (one input only).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Processes for many inputs: the files are shared out and each is written once. "
    "CPU threads are divided between them; with --device cuda, worker k uses GPU k.",
)
@force_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or messages.")
@handle_errors
def denoise(
    inputs,
    output,
    weights,
    download,
    key,
    layout,
    tile,
    overlap,
    max_memory,
    device,
    threads,
    nan_policy,
    normalise,
    suffix,
    method,
    sigma,
    preview,
    workers,
    force,
    quiet,
) -> None:
    """Denoise one or more cubes (files, PNG-band folders, or folders of cubes).

    Each output is written beside its input as <stem>_denoised.<ext> unless -o is given;
    the format follows the output's extension. Outputs are written to a temporary file
    and renamed, so an interrupted run leaves no partial file.
    """
    import torch
    from tqdm import tqdm

    from .batch import DenoiseSettings, denoise_in_workers, denoise_serially
    from .inference import resolve_device
    from .weights import load_model

    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    sources = _expand_inputs(inputs)
    many = len(sources) > 1
    if many and output is not None and not Path(output).is_dir():
        raise OutputError(f"{output}: with several inputs, -o must be an existing folder")
    targets = [_output_for(src, output, many, suffix) for src in sources]
    for target in targets:  # refuse before any work
        _check_output(target, force)
    if preview is not None:
        if many:
            raise OutputError("--preview needs a single input")
        if not preview.lower().endswith(".png"):
            raise OutputError(f"{preview}: --preview writes a PNG; give a .png name")
        _check_output(Path(preview), force)

    torch_device = resolve_device(device)
    model = None
    if method == "ras2s":
        model = load_model(weights, torch_device, download=download)  # fail early, once
    else:
        from .baselines import available

        reason = available().get(
            method, f"unknown method {method!r}; known: ras2s, " + ", ".join(available())
        )
        if reason is not None:
            raise InputError(reason)
    show = not quiet and sys.stderr.isatty()
    parallel = many and workers > 1
    settings = DenoiseSettings(
        method=method,
        weights=weights,
        download=download,
        key=key,
        layout=layout,
        tile=tile,
        overlap=overlap,
        max_memory=max_memory,
        device=str(torch_device) if device != "auto" else device,
        threads=threads,
        nan_policy=nan_policy,
        normalise=normalise,
        sigma=None if sigma is None else sigma / 255,
        force=force,
        progress=show and not parallel,
    )
    if parallel:
        model = None  # each worker loads its own copy
        results = denoise_in_workers(sources, targets, settings, min(workers, len(sources)))
    else:
        results = denoise_serially(
            sources, targets, settings, model, Path(preview) if preview else None
        )
    failures = 0
    bar = tqdm(total=len(sources), desc="files", unit="file", disable=not (show and many))
    for result in results:
        for message in result.warnings:
            click.echo(f"ras2s: warning: {result.source}: {message}", err=True)
        if result.error is not None:
            if not many:
                raise Ras2sError(result.error)
            failures += 1
            click.echo(f"ras2s: error: {result.error}", err=True)
        elif not quiet:
            worker = f" (worker {result.worker})" if parallel else ""
            click.echo(f"{result.source} -> {result.target}{worker}", err=True)
        bar.update()
    bar.close()
    if failures:
        _fail(f"{failures} of {len(sources)} inputs failed")


@main.command()
@click.argument("path")
@key_option
@layout_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def info(path, key, layout, as_json) -> None:
    """Describe a cube file: format, stored shape, layout, bands, dtype, value range."""
    import numpy as np

    from .io import read_cube

    cube = read_cube(path, key=key, layout=layout)
    data = cube.data
    bands, height, width = data.shape
    finite = np.isfinite(data) if np.issubdtype(data.dtype, np.floating) else None
    fields = {
        "path": str(cube.path),
        "format": cube.format,
        "key": cube.key,
        "stored_layout": cube.layout,
        "bands": bands,
        "height": height,
        "width": width,
        "dtype": str(data.dtype),
        "min": float(np.min(data, where=finite, initial=np.inf))
        if finite is not None
        else float(data.min()),
        "max": float(np.max(data, where=finite, initial=-np.inf))
        if finite is not None
        else float(data.max()),
        "non_finite": int(finite.size - finite.sum()) if finite is not None else 0,
        "default_tiles": _describe_plan(data.shape, data.dtype),
    }
    wavelengths = cube.metadata.get("wavelength") if isinstance(cube.metadata, dict) else None
    if wavelengths:
        fields["wavelengths"] = f"{wavelengths[0]} .. {wavelengths[-1]} ({len(wavelengths)})"
    if as_json:
        click.echo(json.dumps(fields, indent=2))
    else:
        for name, value in fields.items():
            click.echo(f"{name:>14}: {value}")


def _describe_plan(shape: tuple[int, int, int], dtype) -> str:
    """Tiles ``ras2s denoise`` uses under the default budget: ``4 x (272 x 272), overlap 32``."""
    from .inference import plan_tiles
    from .tiling import tile_grid

    tile, overlap = plan_tiles(shape, dtype)
    grid = tile_grid(shape[1], shape[2], tile, overlap)
    height, width = grid[0].shape
    return f"{len(grid)} x ({height} x {width}), overlap {overlap}"


@main.group()
def weights() -> None:
    """List or download named weights."""


@weights.command("list")
@handle_errors
def weights_list() -> None:
    """Show the named weights and whether each is available here."""
    from .errors import WeightsError
    from .weights import REGISTRY, resolve

    for name, spec in REGISTRY.items():
        try:
            where = str(resolve(name))
        except WeightsError as err:
            where = f"not available: {err}"
        click.echo(f"{name}: {spec.description}\n    {where}")


@weights.command("download")
@click.argument("name", default="official")
@force_option
@handle_errors
def weights_download(name, force) -> None:
    """Download named weights to the user cache (verified by sha256)."""
    from .weights import download

    click.echo(str(download(name, force=force)))


def _register_subcommands() -> None:
    """Add the commands that live in their own modules (they import helpers from here)."""
    from .evaluate_cli import evaluate_command, noise_command
    from .report_cli import report_command
    from .train.commands import export, prepare, train

    main.add_command(prepare, "prepare")
    main.add_command(train, "train")
    main.add_command(export, "export")
    main.add_command(noise_command, "noise")
    main.add_command(evaluate_command, "evaluate")
    main.add_command(report_command, "report")


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    main()
