"""``ras2s noise``: add one of the paper's noise cases to a clean cube, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import options

__all__ = ["CASES_HELP", "noise", "parse_param"]

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


@click.command()
@click.argument("source", metavar="IN")
@options.output(
    "Output cube; its extension picks the format (default: <stem>_<case>.<ext> beside the input).",
    default=None,
)
@click.option("--case", default="mixture", show_default=True, help=CASES_HELP)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the noise."
)
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
    help="Map the noisy cube back to the input's value range (float32; float64 for a "
    "float64 input). Default: write it in the normalised [0, 1] domain where the noise "
    "is defined.",
)
@options.key
@options.layout
@options.force
@options.handle_errors
def noise(source, output, case, seed, params, keep_range, key, layout, force) -> None:
    """Add one of the paper's noise cases to a clean cube, reproducibly.

    The cube is min-max normalised over all its values to [0, 1] (the domain in which
    the noise is defined), the noise is added with --seed, and the result is written
    as float32 in that [0, 1] domain (not clipped: an integer output would clip and
    round the noise). --keep-range maps it back to the input's range (float32, or
    float64 for a float64 input so that a small range on a large offset keeps its
    levels). The output never replaces the input, --force or not. A JSON
    sidecar OUTPUT.json records the case, seed, every drawn parameter, the normalisation
    lo/hi, the input path and sha256, and the ras2s version.
    """
    from .. import __version__
    from ..cube import denormalise, normalise
    from ..io import (
        FolderLock,
        check_output,
        check_replaceable,
        default_output_path,
        read_cube,
        sha256_file,
        write_cube,
        write_text_atomically,
    )
    from ..noise import add_noise

    overrides = dict(parse_param(p) for p in params)
    src = Path(source)
    target = Path(output) if output else default_output_path(src, suffix=f"_{case}")
    sidecar = _sidecar_path(target)
    check_output(target, force=force, inputs=[src])
    check_replaceable(sidecar, force=force, inputs=[src])
    cube = read_cube(src, key=key, layout=layout)
    dtype = np.float64 if keep_range and cube.data.dtype == np.float64 else np.float32
    check_output(target, dtype, force=force, inputs=[src])
    clean, lo, hi = normalise(cube.data, source=str(src))
    noisy, drawn = add_noise(clean, case, rng=seed, return_params=True, **overrides)
    if keep_range:
        noisy = denormalise(noisy, lo, hi, dtype, copy=False)
    record = {
        "case": drawn.get("case", case),
        "seed": seed,
        "overrides": overrides,
        "parameters": drawn,
        "normalisation": {"lo": lo, "hi": hi, "rule": "(x - lo) / (hi - lo) over the cube"},
        "domain": "input range (--keep-range)" if keep_range else "normalised [0, 1]",
        "dtype": str(np.dtype(dtype)),
        "input": {
            "path": str(src.resolve()),
            "sha256": sha256_file(src),
            "key": cube.key,
            "layout": cube.layout,
            "format": cube.format,
            "shape": list(cube.data.shape),
            "dtype": str(cube.data.dtype),
        },
        "output": str(target),
        "ras2s_version": __version__,
    }
    # cube and sidecar published as one: a second `noise` on the same target waits here,
    # then (without --force) finds the cube there and refuses, or (--force) replaces both
    with FolderLock(target.parent):
        write_cube(target, noisy, like=cube, force=force)
        write_text_atomically(sidecar, json.dumps(record, indent=1) + "\n", force=force)
    click.echo(f"{src} -> {target} ({record['case']}, seed {seed})", err=True)
