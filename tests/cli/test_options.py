"""The shared options and the one error handler of :mod:`ras2s.cli.options`."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from ras2s.cli import main, options
from ras2s.cli.options import parse_size
from ras2s.errors import InputError


def test_parse_size():
    assert parse_size("2G") == 2 << 30
    assert parse_size("512M") == 512 << 20
    assert parse_size("1.5GiB") == int(1.5 * (1 << 30))
    assert parse_size("1000") == 1000


def test_debug_shows_traceback(runner, tmp_path):
    result = runner.invoke(main, ["--debug", "info", str(tmp_path / "missing.mat")])
    assert result.exit_code != 0 and result.exception is not None


def test_missing_extra_names_the_extra():
    @click.command()
    @options.handle_errors
    def needs_lightning():
        raise ModuleNotFoundError("No module named 'lightning'", name="lightning")

    @click.group()
    @click.option("--debug", is_flag=True)
    def group(debug):
        pass

    group.add_command(needs_lightning, "go")
    result = CliRunner().invoke(group, ["go"])
    assert result.exit_code == 2
    assert "pip install 'ras2s[train]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_threads_below_one_is_refused():
    with pytest.raises(InputError, match="--threads must be >= 1"):
        options.set_threads(0)


def test_precision_option_declares_the_three_choices():
    @click.command()
    @options.precision
    def show(precision):
        click.echo(precision)

    assert CliRunner().invoke(show, []).output.strip() == "auto"
    assert CliRunner().invoke(show, ["--precision", "bf16"]).output.strip() == "bf16"
    assert CliRunner().invoke(show, ["--precision", "fp16"]).exit_code == 2


def test_every_command_is_registered():
    assert set(main.commands) == {
        "denoise",
        "info",
        "weights",
        "noise",
        "evaluate",
        "report",
        "assess",
        "prepare",
        "train",
        "export",
    }


def test_band_window_option_parses_auto_none_and_counts():
    import click
    from click.testing import CliRunner

    from ras2s.cli import options

    @click.command()
    @options.band_window
    def show(band_window):
        click.echo(repr(band_window))

    runner = CliRunner()
    for given, shown in [
        ([], "'auto'"),
        (["--band-window", "none"], "None"),
        (["--band-window", "0"], "None"),
        (["--band-window", "31"], "31"),
    ]:
        result = runner.invoke(show, given)
        assert result.exit_code == 0 and result.output.strip() == shown, (given, result.output)
    for bad in ("2", "many"):
        result = runner.invoke(show, ["--band-window", bad])
        assert result.exit_code == 2 and "--band-window" in result.output
