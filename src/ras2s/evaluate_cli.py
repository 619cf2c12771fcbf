"""The ``ras2s noise`` and ``ras2s evaluate`` commands (registered on :data:`ras2s.cli.main`).

Both are thin layers over :func:`ras2s.add_noise` and :func:`ras2s.evaluate.evaluate`.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from .cli import force_option, handle_errors, key_option, layout_option
from .errors import InputError, OutputError

__all__ = ["evaluate_command", "noise_command", "parse_param"]

CASES_HELP = (
    "Noise case. Gaussian levels use the paper's 0-255 naming: iid30 (or gaussian30) is "
    "i.i.d. sigma 30/255 on the [0, 1] cube, any NN works; noniid (per-band sigma from "
    "{10,30,50,70}/255), stripe, deadline, impulse, mixture, blind, poisson (peak 10), "
    "speckle (variance 0.3)."
)


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value`` -> ``(name, value)``; the value is read as JSON when it parses.

    Examples
    --------
    >>> parse_param("peak=5"), parse_param("fraction=[0.1, 0.2]")
    (('peak', 5), ('fraction', [0.1, 0.2]))
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise click.BadParameter(f"{text!r} is not name=value (e.g. peak=5, variance=0.1)")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value.strip()
    return name, parsed


def _sidecar_path(output: Path) -> Path:
    return output.with_name(output.name + ".json")


# --------------------------------------------------------------------------- noise
@click.command("noise")
@click.argument("source", metavar="IN")
@click.option(
    "-o",
    "--output",
    default=None,
    help="Output cube; its extension picks the format (default: <stem>_<case>.<ext> "
    "beside the input).",
)
@click.option("--case", default="mixture", show_default=True, help=CASES_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a parameter of the case (repeatable), in data units of the [0, 1] "
    "cube: peak=5, variance=0.1, sigmas=[0.1,0.2], amounts=[0.3], max_offset=0.1, ...",
)
@click.option(
    "--keep-range",
    is_flag=True,
    help="Map the noisy cube back to the input's value range (still float32). Default: "
    "write it in the normalised [0, 1] domain where the noise is defined.",
)
@key_option
@layout_option
@force_option
@handle_errors
def noise_command(source, output, case, seed, params, keep_range, key, layout, force) -> None:
    """Add one of the paper's noise cases to a clean cube, reproducibly.

    The cube is min-max normalised over all its values to [0, 1] (the domain in which
    the noise is defined), the noise is added with --seed, and the result is written
    as float32 in that [0, 1] domain (not clipped: an integer output would clip and
    round the noise). --keep-range maps it back to the input's range (float32). A JSON
    sidecar OUT.json records the case, seed, every drawn parameter, the normalisation
    lo/hi, the input path and sha256, and the ras2s version.
    """
    import numpy as np

    from . import __version__
    from .evaluate import _normalise, _sha256_path, _write_text_atomic
    from .io import default_output_path, read_cube, write_cube
    from .noise import add_noise

    overrides = dict(parse_param(p) for p in params)
    src = Path(source)
    target = Path(output) if output else default_output_path(src, suffix=f"_{case}")
    sidecar = _sidecar_path(target)
    for path in (target, sidecar):
        if path.exists() and not force:
            raise OutputError(f"{path} already exists; pass --force to overwrite it")
    cube = read_cube(src, key=key, layout=layout)
    clean, lo, hi = _normalise(cube.data, str(src))
    noisy, drawn = add_noise(clean, case, rng=seed, return_params=True, **overrides)
    if keep_range:
        noisy = (noisy.astype(np.float64) * (hi - lo) + lo).astype(np.float32)
    write_cube(target, noisy, like=cube, force=force)
    record = {
        "case": drawn.get("case", case),
        "seed": seed,
        "overrides": overrides,
        "parameters": drawn,
        "normalisation": {"lo": lo, "hi": hi, "rule": "(x - lo) / (hi - lo) over the cube"},
        "domain": "input range (--keep-range)" if keep_range else "normalised [0, 1]",
        "dtype": "float32",
        "input": {
            "path": str(src.resolve()),
            "sha256": _sha256_path(src),
            "key": cube.key,
            "layout": cube.layout,
            "format": cube.format,
            "shape": list(cube.data.shape),
            "dtype": str(cube.data.dtype),
        },
        "output": str(target),
        "ras2s_version": __version__,
    }
    _write_text_atomic(sidecar, json.dumps(record, indent=1) + "\n")
    click.echo(f"{src} -> {target} ({record['case']}, seed {seed})", err=True)


# ------------------------------------------------------------------------ evaluate
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


@click.command("evaluate")
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
    "ras2s-denoise (ras2s.denoise, re-normalises the noisy cube), or baselines of "
    "ras2s.baselines. The noisy input is always the first row.",
)
@click.option(
    "--weights",
    default="default",
    show_default=True,
    help="'default', 'official' (authors' checkpoint) or a checkpoint path.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Master seed of the noise.")
@click.option(
    "--crop",
    default=None,
    help="Centre crop: 512, 64x48, or a preset of the paper's Table 1 (icvl 512, cave 512, "
    "kaist 2048, pavia 384, wdc 256, urban 224, realhsi 512). Default: whole image.",
)
@click.option("--bands", default=None, help="Band subset after the crop: 0:31 (slice) or 0,5,9.")
@click.option(
    "--out",
    "out_dir",
    default="results",
    show_default=True,
    help="Output folder: per_image.csv, results.json, table.md.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Skip (image, case, method) runs already in OUT/per_image.csv, or start afresh.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--threads", type=int, default=None, help="CPU threads for PyTorch.")
@click.option(
    "--key",
    "keys",
    multiple=True,
    help="Variable inside container files: KEY for all, or IMAGE=KEY per image "
    "(repeatable; IMAGE is the file name, stem or path), e.g. --key Samson=SamSon.",
)
@layout_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no table on stdout.")
@handle_errors
def evaluate_command(
    images,
    data,
    cases,
    methods,
    weights,
    seed,
    crop,
    bands,
    out_dir,
    resume,
    device,
    threads,
    keys,
    layout,
    quiet,
) -> None:
    """Score denoisers on noisy versions of clean cubes, like the paper's tables.

    Every image is centre-cropped (--crop), band-subset (--bands), min-max normalised to
    [0, 1] (the clean reference) and, per case, given noise with a seed derived from
    (--seed, image name, case); each method denoises it and is scored with MPSNR, MSSIM
    (paper and gaussian conventions), SAM and ERGAS. Writes OUT/per_image.csv
    (resumable), OUT/results.json (provenance) and OUT/table.md (means, paper layout).
    A failure on one image is recorded and the others go on; the exit code is then 2.
    """
    from .evaluate import evaluate

    sources = [*data, *images]
    if not sources:
        raise InputError("no input: give cubes or folders with --data (or as arguments)")
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    results = evaluate(
        sources,
        _split(cases),
        _split(methods),
        weights=weights,
        seed=seed,
        crop=crop,
        bands=bands,
        out_dir=out_dir,
        resume=resume,
        progress=not quiet and sys.stderr.isatty(),
        device=device,
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
