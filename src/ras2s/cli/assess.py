"""``ras2s assess``: no-reference assessment of a real noisy cube and its denoised versions."""

from __future__ import annotations

import click

from ..errors import InputError, OutputError
from . import options

__all__ = ["assess"]

_OUTPUTS = ("per_band.csv", "summary.json", "report.html")


def _wavelengths(metadata: dict) -> list[float] | None:
    """ENVI ``wavelength`` as floats, or None when absent or not numeric."""
    values = metadata.get("wavelength") if isinstance(metadata, dict) else None
    try:
        return [float(v) for v in values] if values else None
    except (TypeError, ValueError):
        return None


@click.command()
@click.argument("noisy_path", metavar="NOISY")
@options.denoised("A denoised version of NOISY and the name to show (repeat for several).")
@options.output("Output folder (created): per_band.csv, summary.json, report.html.", required=True)
@options.nodata
@click.option("--no-report", is_flag=True, help="Only per_band.csv and summary.json.")
@options.key
@options.layout
@options.force
@options.handle_errors
def assess(noisy_path, denoised, output, nodata, no_report, key, layout, force) -> None:
    """Measure noise without a clean reference: per-band sigma, stripes, method noise.

    Writes per_band.csv (cube, band, wavelength, sigma, stripe_index; sigma and stripe
    index in the input's data units), summary.json (medians, sigma ratio, residual
    correlation) and report.html (figures). Sigma is a wavelet-MAD estimate,
    median(|HH|)/0.6745 on the finest Haar diagonal detail of each band. --key and
    --layout apply to every file.
    """
    from ..io import cube_nodata, read_cube
    from ..report.assessment import write_assessment

    out = options.output_folder(output, _OUTPUTS, force)
    if not out.parent.is_dir():
        raise OutputError(f"{out}: parent folder {out.parent} does not exist")

    noisy = read_cube(noisy_path, key=key, layout=layout)
    value = nodata if nodata is not None else cube_nodata(noisy)
    cubes = {}
    for name, path in denoised.items():
        cube = read_cube(path, key=key, layout=layout)
        if cube.data.shape != noisy.data.shape:
            raise InputError(
                f"{path}: shape {cube.data.shape} (bands, H, W) differs from the noisy "
                f"cube's {noisy.data.shape} ({noisy_path})"
            )
        cubes[name] = cube.data
    settings = {"noisy": str(noisy_path), **{f"denoised {n}": str(p) for n, p in denoised.items()}}
    written = write_assessment(
        out,
        noisy.data,
        cubes,
        wavelengths=_wavelengths(noisy.metadata),
        nodata=value,
        settings=settings,
        report=not no_report,
    )
    for path in written.values():
        click.echo(str(path))
