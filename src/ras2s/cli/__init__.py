"""The ``ras2s`` command: a click group whose subcommands live one family per module.

Every module here is a thin layer over the Python API (parse, call, print); nothing in
ras2s imports this package. Shared options and the error handler are in
:mod:`ras2s.cli.options`.
"""

from __future__ import annotations

import click

from .. import __version__
from . import assess, denoise, evaluate, noise, options, report, train


@click.group(cls=options.Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ras2s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """RAS2S hyperspectral denoising."""


for _command in (
    denoise.denoise,
    denoise.info,
    denoise.weights,
    noise.noise,
    evaluate.evaluate,
    report.report,
    assess.assess,
    train.prepare,
    train.train,
    train.export,
):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()
