"""``ras2s evaluate``: score denoisers on the paper's noise cases (see :mod:`ras2s.evaluate`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import InputError
from . import options

__all__ = ["evaluate"]


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for text in values for v in text.split(",") if v.strip()]


def _keys(values: tuple[str, ...]) -> str | dict[str, str] | None:
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    mapping = {}
    for text in values:
        image, sep, name = text.partition("=")
        if not sep or not image or not name:
            raise click.BadParameter(
                f"{text!r}: with several --key, each must be IMAGE=KEY (e.g. Samson=SamSon)",
                param_hint="--key",
            )
        mapping[image] = name
    return mapping


@click.command()
@click.argument("images", nargs=-1)
@click.option(
    "--data",
    multiple=True,
    help="Cube file, PNG-band folder, or folder searched recursively (repeatable; "
    "positional arguments are added).",
)
@click.option(
    "--cases",
    multiple=True,
    default=("noniid,stripe,deadline,impulse,mixture",),
    show_default=True,
    help="Comma-separated noise cases. Gaussian levels use the paper's 0-255 naming "
    "(iid30/gaussian30 = sigma 30/255 on the [0, 1] cube); also noniid, stripe, deadline, "
    "impulse, mixture, poisson, speckle, blind.",
)
@click.option(
    "--methods",
    multiple=True,
    default=("ras2s",),
    show_default=True,
    help="Comma-separated methods: ras2s (network on the noisy cube, as the paper), "
    "ras2s-denoise (ras2s.denoise, re-normalises the noisy cube as the weights' card asks), "
    "ras2s-denoise-clean (by its estimated clean range), ras2s-denoise-minmax (by its "
    "range), ras2s-denoise-percentile (by its 0.5th and 99.5th percentiles), or baselines of "
    "ras2s.baselines. The noisy input is always the first row.",
)
@options.weights
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Master seed of the noise.",
)
@click.option(
    "--crop",
    default=None,
    help="Centre crop: 512, 64x48, or a preset of the paper's Table 1 (icvl 512, cave 512, "
    "kaist 2048, pavia 384, wdc 256, urban 224, realhsi 512). Default: whole image.",
)
@click.option("--bands", default=None, help="Band subset after the crop: 0:31 (slice) or 0,5,9.")
@options.output(
    "Output folder: per_image.csv, results.json, table.md.",
    default="results",
    show_default=True,
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Skip (image, case, method) runs already in OUTPUT/per_image.csv, or start afresh.",
)
@options.device
@options.threads
@options.precision
@options.band_window
@options.keys
@options.layout
@options.quiet
@options.handle_errors
def evaluate(
    images,
    data,
    cases,
    methods,
    weights,
    seed,
    crop,
    bands,
    output,
    resume,
    device,
    threads,
    precision,
    band_window,
    keys,
    layout,
    quiet,
) -> None:
    """Score denoisers on noisy versions of clean cubes, like the paper's tables.

    Every image is centre-cropped (--crop), band-subset (--bands), min-max normalised to
    [0, 1] (the clean reference) and, per case, given noise with a seed derived from
    (--seed, image name, case); each method denoises it and is scored with MPSNR, MSSIM
    (paper and gaussian conventions), SAM and ERGAS. Writes OUTPUT/per_image.csv
    (resumable), OUTPUT/results.json (provenance) and OUTPUT/table.md (means, paper layout).
    A failure on one image is recorded and the others go on; the exit code is then 2.
    """
    from ..evaluate import evaluate as run_evaluate

    sources = [*data, *images]
    if not sources:
        raise InputError("no input: give cubes or folders with --data (or as arguments)")
    options.set_threads(threads)
    results = run_evaluate(
        sources,
        _split(cases),
        _split(methods),
        weights=weights,
        seed=seed,
        crop=crop,
        bands=bands,
        out_dir=output,
        resume=resume,
        progress=not quiet and sys.stderr.isatty(),
        device=device,
        precision=precision,
        band_window=band_window,
        key=_keys(keys),
        layout=layout,
        command=shlex.join(["ras2s", "evaluate", *sys.argv[2:]])
        if Path(sys.argv[0]).name == "ras2s"
        else None,
    )
    if not quiet:
        click.echo(results.table)
        click.echo(f"wrote {results.csv_path}, {results.json_path}, {results.table_path}", err=True)
    if results.failures:
        for failure in results.failures:
            where = "/".join(str(failure[k]) for k in ("image", "case", "method") if failure[k])
            click.echo(f"ras2s: error: {where}: {failure['error']}", err=True)
        click.echo(
            f"ras2s: error: {len(results.failures)} failure(s), recorded in {results.json_path}",
            err=True,
        )
        sys.exit(2)
