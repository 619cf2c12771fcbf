"""``ras2s denoise``, ``ras2s info`` and ``ras2s weights``: the everyday commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import InputError, Ras2sError
from ..precision import describe_auto, resolve_precision
from . import options

__all__ = ["denoise", "info", "weights"]


def _check_method(method: str) -> None:
    """An unknown baseline, or one whose extra is missing: InputError before any work."""
    from ..baselines import available

    reason = available().get(
        method, f"unknown method {method!r}; known: ras2s, " + ", ".join(available())
    )
    if reason is not None:
        raise InputError(reason)


def _print_results(results, total: int, parallel: bool, show: bool, quiet: bool) -> int:
    """Echo each file's outcome; return how many failed (one input: raise its error)."""
    from tqdm import tqdm

    many = total > 1
    failures = 0
    bar = tqdm(total=total, desc="files", unit="file", disable=not (show and many))
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
    return failures


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@options.output("Output file (one input) or folder (several).", default=None)
@options.weights
@click.option("--download", is_flag=True, help="Allow downloading the official weights.")
@options.key
@options.layout
@click.option(
    "--tile",
    type=click.IntRange(min=1),
    default=None,
    help="Tile side in pixels (default: from --max-memory).",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    help="Tile overlap in pixels, smaller than the tile (default 32).",
)
@click.option(
    "--tile-workers",
    default="auto",
    show_default=True,
    metavar="N|auto",
    callback=lambda ctx, param, value: options.tile_workers_value(value),
    help="CPU processes running tiles of one cube at once, one thread each (auto: one per "
    "thread when the cube has at least two tiles per worker; 1: this process's threads).",
)
@options.max_memory("Memory budget for input, output and one tile's network memory.")
@options.device
@options.threads
@options.precision
@options.band_window
@click.option(
    "--nan-policy",
    type=click.Choice(["error", "fill"]),
    default="error",
    show_default=True,
    help="Reject NaN/Inf, or fill them with their band's mean.",
)
@click.option(
    "--normalise",
    type=click.Choice(["auto", "clean", "minmax", "percentile", "none"]),
    default="auto",
    show_default=True,
    help="Map the cube to [0, 1]: auto (what the weights' card asks: clean for the default "
    "and the authors' weights, minmax for the classical methods), clean (the estimated "
    "range of the clean signal: min/max of a median-filtered, smoothed copy), by its "
    "min/max (paper), by its 0.5/99.5 percentiles, or not at all (already normalised).",
)
@click.option(
    "--cog",
    is_flag=True,
    help="TIFF outputs: write Cloud-Optimized GeoTIFFs (tiled, deflate, internal overviews).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="A diverging network is an error. By default the cube is denoised again in "
    "31-band windows, then with minmax normalisation, with a warning saying so (also "
    "recorded in the output's .json sidecar).",
)
@options.nodata
@options.skip_bands
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
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS|local:N",
    default=None,
    help="Spread the files over a dask.distributed cluster instead: a scheduler address "
    "(tcp://host:8786), its scheduler file (.json), or local:N (N worker processes, 1 "
    "thread each). The workers write "
    "the outputs, so their paths must be storage every worker sees (docs/scale.md). "
    "Needs ras2s[scale]; not with --workers.",
)
@click.option(
    "--dask-split",
    type=click.Choice(["auto", "files", "tiles"]),
    default="auto",
    show_default=True,
    help="With --dask: 'files' sends each file to a worker (which writes it); 'tiles' "
    "runs the files here one after the other with each one's tiles on the workers (the "
    "serial result; no shared storage needed); 'auto': tiles when there are fewer files "
    "than worker threads.",
)
@options.force
@options.quiet
@options.handle_errors
def denoise(
    inputs, output, preview, workers, dask_address, dask_split, method, weights, quiet, **settings
) -> None:
    """Denoise one or more cubes (files, PNG-band folders, or folders of cubes).

    Each output is written beside its input as <stem>_denoised.<ext> unless -o is given;
    the format follows the output's extension, and <output>.json beside it records how
    it was made (weights, normalisation and range, band window, any fallback). Outputs
    are written to a temporary file and renamed, so an interrupted run leaves no partial
    file. A folder given as input
    skips the cubes named *<suffix> (what an earlier run wrote there). An input is never
    overwritten, and --force replaces only regular files and PNG-band folders.
    """
    from ..batch import DenoiseSettings, denoise_in_workers, denoise_serially, plan_targets
    from ..inference import resolve_device
    from ..io import check_suffix, expand_inputs
    from ..progress import progress_setting
    from ..weights import load_model

    options.set_threads(settings["threads"])
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if dask_address is not None:  # files over a dask cluster: ras2s.distributed
        from ..distributed import denoise_on_cluster, parse_address

        if workers > 1:
            raise InputError("--dask and --workers exclude each other; give one of them")
        cluster = parse_address(dask_address)
    suffix = check_suffix(settings.pop("suffix"))
    sources = expand_inputs(inputs, skip_suffix=suffix)  # not what an earlier run wrote
    targets = plan_targets(sources, output, suffix=suffix, preview=preview, force=settings["force"])
    if settings["cog"]:
        not_tiff = [t for t in targets if t.suffix.lower() not in (".tif", ".tiff")]
        if not_tiff:
            raise InputError(f"{not_tiff[0]}: --cog writes TIFF outputs; give a .tif name")
    torch_device = resolve_device(settings["device"])
    model = None
    if method == "ras2s":
        model = load_model(  # fail early
            weights, torch_device, download=settings["download"], precision=settings["precision"]
        )
    else:
        _check_method(method)
    show = not quiet and sys.stderr.isatty()
    parallel = len(sources) > 1 and (workers > 1 or dask_address is not None)
    if settings["device"] != "auto":
        settings["device"] = str(torch_device)
    if settings["sigma"] is not None:
        settings["sigma"] /= 255
    tiles_progress = False if parallel else progress_setting(quiet)  # log lines off a tty
    config = DenoiseSettings(method=method, weights=weights, progress=tiles_progress, **settings)
    if dask_address is not None:  # each dask worker loads the model once, writes its files
        results = denoise_on_cluster(
            sources,
            targets,
            config,
            cluster,
            preview=Path(preview) if preview else None,
            notify=lambda line: click.echo(f"ras2s: {line}", err=True),
            split=dask_split,
            model=model,
        )
    elif parallel:  # each worker loads its own copy of the model
        results = denoise_in_workers(sources, targets, config, min(workers, len(sources)))
    else:
        results = denoise_serially(
            sources, targets, config, model, Path(preview) if preview else None
        )
    failures = _print_results(results, len(sources), parallel, show, quiet)
    if failures:
        options.fail(f"{failures} of {len(sources)} inputs failed")


@click.command()
@click.argument("path")
@options.key
@options.layout
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@options.max_memory("Memory budget: the cube is read in row strips of about an eighth of it.")
@options.handle_errors
def info(path, key, layout, as_json, max_memory) -> None:
    """Describe a cube file: format, stored shape, layout, bands, dtype, value range.

    The value range and the normalisation leave out the file's nodata value (GDAL_NODATA
    or ENVI 'data ignore value'); the normalisation line says what `ras2s denoise` with
    the default weights maps to 0 and 1, and how that range was found. The cube is read
    strip by strip, as a streamed `ras2s denoise` reads it, so any size can be described.
    """
    from ..inference import scan_cube
    from ..io import cube_nodata, open_cube
    from ..progress import progress_setting
    from ..ranges import describe
    from ..weights import load_model

    default = load_model("default", precision="fp32")
    with open_cube(path, key=key, layout=layout) as cube:  # read in strips, never whole
        bands, height, width = cube.shape
        nodata = cube_nodata(cube)
        found = scan_cube(
            cube,
            "auto",
            default,
            nodata=nodata,
            max_memory=max_memory,
            progress=progress_setting(False),
        )
        fields = {
            "path": str(cube.path),
            "format": cube.format,
            "key": cube.key,
            "stored_layout": cube.layout,
            "bands": bands,
            "height": height,
            "width": width,
            "dtype": str(cube.dtype),
            "nodata": "none" if nodata is None else f"{nodata:g}",
            "min": found.lo,
            "max": found.hi,
            "non_finite": found.nonfinite,
            "default_tiles": _describe_plan(cube.shape, cube.dtype, default),
            "normalisation": _describe_normalisation(found, nodata, describe()),
            "precision": describe_auto("cpu"),
        }
        if nodata is not None:
            fields["nodata_values"] = found.left_out
        metadata = cube.metadata
    wavelengths = metadata.get("wavelength") if isinstance(metadata, dict) else None
    if wavelengths:
        fields["wavelengths"] = f"{wavelengths[0]} .. {wavelengths[-1]} ({len(wavelengths)})"
    if as_json:
        click.echo(json.dumps(fields, indent=2))
    else:
        for name, value in fields.items():
            click.echo(f"{name:>14}: {value}")


def _describe_normalisation(found, nodata, how_clean: str) -> str:
    """What ``ras2s denoise`` maps to 0 and 1 with the default weights (``--normalise auto``).

    ``found``: :class:`ras2s.inference.CubeScan`; ``how_clean``: the clean estimate's
    one-line description.
    """
    if found.normalise is None:
        return f"none possible: {found.why}"
    how, lo, hi = found.normalise
    what = {
        "clean": f"estimated clean range, {how_clean}:",
        "percentile": "0.5th and 99.5th percentiles",
        "minmax": "minimum and maximum",
    }.get(how, "")
    left_out = ", nodata left out" if nodata is not None else ""
    return f"{how} (default weights{left_out}): {what} {lo:.6g} .. {hi:.6g} map to 0 .. 1"


def _describe_plan(shape: tuple[int, int, int], dtype, model) -> str:
    """Tiles ``ras2s denoise`` uses under the default budget: ``4 x (272 x 272), overlap 32``.

    For ``model`` (the default weights) and its band window, in the precision
    ``--precision auto`` picks on this CPU.
    """
    from ..inference import band_overlap, plan_tiles, resolve_band_window
    from ..tiling import band_window_starts, tile_grid

    window = resolve_band_window("auto", model)
    tile, overlap = plan_tiles(
        shape, dtype, precision=resolve_precision("auto", "cpu"), band_window=window
    )
    grid = tile_grid(shape[1], shape[2], tile, overlap)
    height, width = grid[0].shape
    plan = f"{len(grid)} x ({height} x {width}), overlap {overlap}"
    if window is not None and window < shape[0]:
        runs = len(band_window_starts(shape[0], window, band_overlap(window)))
        plan += f"; {runs} windows of {window} bands each"
    else:
        plan += f"; all {shape[0]} bands in one network run"
    return plan


@click.group()
def weights() -> None:
    """List or download named weights."""


@weights.command("list")
@options.handle_errors
def weights_list() -> None:
    """Show the named weights and whether each is available here."""
    from ..errors import WeightsError
    from ..weights import REGISTRY, resolve

    for name, spec in REGISTRY.items():
        try:
            where = str(resolve(name))
        except WeightsError as err:
            where = f"not available: {err}"
        click.echo(f"{name}: {spec.description}\n    {where}")


@weights.command("download")
@click.argument("name", default="official")
@options.force
@options.handle_errors
def weights_download(name, force) -> None:
    """Download named weights to the user cache (verified by sha256)."""
    from ..weights import download

    click.echo(str(download(name, force=force)))
