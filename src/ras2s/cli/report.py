"""``ras2s report``: an HTML page of figures and tables comparing denoised cubes."""

from __future__ import annotations

import click

from ..errors import InputError
from . import options

__all__ = ["parse_ints", "parse_pixels", "report"]

_OUTPUTS = (
    "report.html",
    "comparison.png",
    "error_maps.png",
    "spectral_difference.png",
    "per_band_psnr.png",
)


def parse_ints(text: str, count: int, option: str) -> tuple[int, ...]:
    """``"27,16,6"`` -> ``(27, 16, 6)``, exactly ``count`` integers >= 0."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or any(v < 0 for v in values):
        raise click.BadParameter(
            f"{text!r} is not {count} comma-separated integers >= 0", param_hint=option
        )
    return values


def parse_pixels(text: str) -> list[tuple[int, int]]:
    """``"10,20;30,40"`` -> ``[(10, 20), (30, 40)]``."""
    return [parse_ints(p, 2, "--pixels") for p in text.split(";") if p.strip()]  # type: ignore[misc]


def _rgb_cb(ctx, param, value):
    return parse_ints(value, 3, "--rgb") if value else None


def _inset_cb(ctx, param, value):
    return parse_ints(value, 3, "--inset") if value else None


def _pixels_cb(ctx, param, value):
    return parse_pixels(value) if value else None


@click.command()
@click.option("--clean", "clean_path", default=None, help="Reference (clean) cube file.")
@click.option("--noisy", "noisy_path", default=None, help="Noisy cube file.")
@options.denoised("A denoised cube and the name to show (repeat for several methods).")
@click.option(
    "--results",
    "results_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="A 'ras2s evaluate' output folder: its tables go into the report.",
)
@options.output("Output folder (created).", required=True)
@click.option(
    "--rgb",
    default=None,
    metavar="R,G,B",
    callback=_rgb_cb,
    help="False-colour band indices (0-based; default 27,16,6 for 31 bands).",
)
@click.option(
    "--pixels",
    default=None,
    metavar="Y,X;Y,X",
    callback=_pixels_cb,
    help="Pixels of the per-band error plot (default: centre and quarter points).",
)
@click.option(
    "--inset",
    default=None,
    metavar="Y0,X0,SIZE",
    callback=_inset_cb,
    help="Square magnified in every panel (default: a fifth of the side).",
)
@click.option("--title", default="ras2s denoising report", show_default=True, help="Page title.")
@options.key
@options.layout
@options.force
@options.handle_errors
def report(
    clean_path,
    noisy_path,
    denoised,
    results_dir,
    output,
    rgb,
    pixels,
    inset,
    title,
    key,
    layout,
    force,
) -> None:
    """Write an HTML report (report.html + PNG figures) comparing denoised cubes.

    All cubes are mapped to [0, 1] with the clean cube's minimum and maximum (one
    affine map for all, so they stay comparable), so PSNR uses data range 1 as in the
    paper. A cube made by `ras2s noise` (or denoised from one) is read in the domain its
    .json sidecar records (normalised [0, 1] unless --keep-range); a cube without one
    whose values do not lie in the clean cube's range is refused. --key and --layout
    apply to every file. Without cubes, --results alone gives a report of an
    evaluation's tables.
    """
    import numpy as np

    from ..cube import normalise
    from ..domain import scoring_range
    from ..io import read_cube
    from ..report import build_report

    if clean_path is None and (noisy_path or denoised):
        raise InputError("--noisy/--denoised need --clean (the reference for the metrics)")
    if clean_path is None and results_dir is None:
        raise InputError(
            "nothing to report: give --clean (with --noisy/--denoised) and/or --results"
        )
    out = options.output_folder(output, _OUTPUTS, force)

    cubes: dict[str, np.ndarray] = {}
    settings: dict[str, object] = {}
    clean = noisy = None
    if clean_path is not None:
        raw = read_cube(clean_path, key=key, layout=layout).data
        clean, lo, hi = normalise(raw, source=str(clean_path))

        def norm(path: str) -> np.ndarray:
            data = read_cube(path, key=key, layout=layout).data
            if data.shape != raw.shape:
                raise InputError(
                    f"{path}: shape {data.shape} (bands, H, W) differs from "
                    f"the clean cube's {raw.shape} ({clean_path})"
                )
            data_lo, data_hi = scoring_range(path, data, lo, hi, clean=clean_path)
            return normalise(data, data_lo, data_hi, source=str(path))[0]

        settings.update(
            {
                "clean": str(clean_path),
                "normalisation": f"(x - {lo:g}) / {hi - lo:g}, the clean cube's min-max, for all",
            }
        )
        if noisy_path is not None:
            noisy = norm(noisy_path)
            settings["noisy"] = str(noisy_path)
        for name, path in denoised.items():
            cubes[name] = norm(path)
            settings[f"denoised {name}"] = str(path)
    if results_dir is not None:
        settings["results"] = str(results_dir)
    target = build_report(
        out,
        results_dir=results_dir,
        clean=clean,
        noisy=noisy,
        results=cubes,
        bands=rgb,
        inset=inset,
        pixels=pixels,
        settings=settings,
        title=title,
    )
    click.echo(str(target))
