"""``ras2s prepare``, ``train`` and ``export`` through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("lightning")

from ras2s.cli.train import export as export_cmd  # noqa: E402
from ras2s.cli.train import prepare as prepare_cmd  # noqa: E402
from ras2s.cli.train import train as train_cmd  # noqa: E402
from ras2s.train.config import load_config  # noqa: E402


def test_commands_import_without_lightning():
    code = (
        "import sys; sys.modules['lightning'] = None; "
        "import ras2s.cli.train as c; print(c.train.name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "train"


@click.group()
@click.option("--debug", is_flag=True)
def _cli(debug):
    pass


for _command in (prepare_cmd, train_cmd, export_cmd):
    _cli.add_command(_command)


def _tiny_train_args(store, out, *extra, steps: int = 1):
    """``ras2s train`` arguments for a tiny model (C=4) trained ``steps`` steps, one epoch."""
    return [
        "train",
        "--patches",
        str(store),
        "-o",
        str(out),
        "--max-steps",
        str(steps),
        *("--set channels=4 --set regions=2 --set batch_size=2 --set threads=1".split()),
        *f"--set val_max_patches=2 --set steps_per_epoch={steps}".split(),
        *extra,
    ]


def test_cli_train_then_export_loads_with_card(store, tmp_path):
    import ras2s

    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(_cli, _tiny_train_args(store, out, steps=2))
    assert result.exit_code == 0, result.output
    saved = load_config(out / "config.yaml")
    assert saved.channels == 4 and saved.max_steps == 2 and saved.data == str(store)
    weights = tmp_path / "w" / "tiny.pt"
    result = runner.invoke(
        _cli, ["export", str(out / "checkpoints" / "last.ckpt"), "-o", str(weights)]
    )
    assert result.exit_code == 0, result.output
    model = ras2s.load_model(weights)
    assert model.config.channels == 4
    card = json.loads(weights.with_suffix(".json").read_text())
    assert model.card["training"] == card["training"]
    assert card["architecture"] == {"channels": 4, "regions": 2, "reach": 1}
    assert card["training"]["steps"] == 2
    assert card["noise"]["stages"] == [[0.0, "complex"]]
    assert card["data"]["held_out_files"][0]["file"] == "c3.npy"
    assert set(card["validation"]["last"]) >= {"mpsnr", "mssim", "sam"}
    # trained on the store's band count only: longer cubes go in windows of it
    bands = np.load(store / "train.npy", mmap_mode="r").shape[1]
    assert card["inference"]["band_window"] == bands
    with torch.no_grad():
        assert model(torch.rand(1, 8, 8, 8)).shape == (1, 8, 8, 8)
    again = runner.invoke(
        _cli, ["export", str(out / "checkpoints" / "last.ckpt"), "-o", str(weights)]
    )
    assert again.exit_code == 2 and "--force" in again.output
    # the normalisation `ras2s denoise --normalise auto` applies for these weights
    ckpt = str(out / "checkpoints" / "last.ckpt")
    again = runner.invoke(
        _cli, ["export", ckpt, "-o", str(weights), "--force"] + ["--normalise", "percentile"]
    )
    assert again.exit_code == 0, again.output
    assert ras2s.load_model(weights).card["inference"]["normalise"] == "percentile"
    assert card["inference"].get("normalise") is None  # the first export recorded none
    # the band window `ras2s denoise --band-window auto` applies: whole cubes, or a count
    from ras2s.inference import resolve_band_window

    for choice, expected in (("none", None), ("5", 5)):
        again = runner.invoke(
            _cli, ["export", ckpt, "-o", str(weights), "--force", "--band-window", choice]
        )
        assert again.exit_code == 0, again.output
        model = ras2s.load_model(weights)
        assert model.card["inference"]["band_window"] == expected
        assert resolve_band_window("auto", model) == expected
        assert f"trained on {bands}-band sequences" in model.card["inference"]["why"]
    again = runner.invoke(_cli, ["export", ckpt, "-o", str(weights), "--band-window", "2"])
    assert again.exit_code == 2 and "at least 3 bands" in again.output


def test_cli_resume_with_set_keeps_the_runs_own_config(store, tmp_path):
    """A cooldown branch: --resume with --set changes only the keys it names."""
    runner = CliRunner()
    out = tmp_path / "run"
    extra = ("--set", "lr=0.0005", "--set", "ema_decay=0.9")
    result = runner.invoke(_cli, _tiny_train_args(store, out, *extra, steps=2))
    assert result.exit_code == 0, result.output
    branch = ["train", "--patches", str(store), "-o", str(out), "--resume"]
    branch += ["--max-steps", "4", "--set", "lr_cooldown_steps=2"]
    result = runner.invoke(_cli, branch)
    assert result.exit_code == 0, result.output
    saved = load_config(out / "config.yaml")
    assert (saved.channels, saved.lr, saved.ema_decay) == (4, 0.0005, 0.9)
    assert (saved.max_steps, saved.lr_cooldown_steps) == (4, 2)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_cli_mix_records_the_store_in_config_and_card(store, store6, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(_cli, _tiny_train_args(store, out, "--mix", f"{store6}=0.5", steps=2))
    assert result.exit_code == 0, result.output
    assert load_config(out / "config.yaml").mix_stores == ((str(store6), 0.5),)
    weights = tmp_path / "mixed.pt"
    result = runner.invoke(_cli, ["export", str(out / "checkpoints/last.ckpt"), "-o", str(weights)])
    assert result.exit_code == 0, result.output
    (mixed,) = json.loads(weights.with_suffix(".json").read_text())["data"]["mixed_in"]
    assert (mixed["store"], mixed["probability"], mixed["bands"]) == (str(store6), 0.5, 6)
    assert [f["file"] for f in mixed["train_files"]] == ["m0.npy", "m1.npy"]
    for bad, message in (
        ("0.5", "STORE=P"),
        (f"{store6}=x", "STORE=P"),
        (f"{tmp_path}=0.5", "not a patch store"),
    ):
        result = runner.invoke(_cli, _tiny_train_args(store, tmp_path / "bad", "--mix", bad))
        assert result.exit_code == 2 and message in result.output, result.output


def test_cli_prepare_band_mismatch_is_one_line_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a.npy", np.random.default_rng(0).random((31, 16, 16)).astype(np.float32))
    np.save(src / "b.npy", np.random.default_rng(1).random((17, 16, 16)).astype(np.float32))
    prepare = ["prepare", str(src), "-o", str(tmp_path / "o"), "--patch", "8"]
    prepare += ["--scales", "1", "--strides", "8", "--layout", "BHW"]
    result = CliRunner().invoke(_cli, prepare)
    assert result.exit_code == 2
    assert "a.npy: 31" in result.output and "b.npy: 17" in result.output
    ok = CliRunner().invoke(
        _cli, [*prepare, "--patch-bands", "17", "--band-rule", "select", "--val-list", "b"]
    )
    assert ok.exit_code == 0, ok.output
    assert "4 training and 4 validation patches of 17 x 8 x 8" in ok.output


def test_init_starts_from_the_given_weights(store, tmp_path, tiny_model, tiny_weights):
    from ras2s.model import RAS2S
    from ras2s.train.run import initialise_from

    fresh = RAS2S(tiny_model.config)
    initialise_from(fresh, str(tiny_weights))
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # through the CLI: a fine-tuning run from the tiny weights trains and records --init
    out = tmp_path / "finetune"
    result = CliRunner().invoke(_cli, _tiny_train_args(store, out, "--init", str(tiny_weights)))
    assert result.exit_code == 0, result.output
    assert load_config(out / "config.yaml").init == str(tiny_weights)


def test_init_with_another_architecture_is_one_line(store, tmp_path, tiny_weights):
    args = _tiny_train_args(store, tmp_path / "bad", "--init", str(tiny_weights))
    args[args.index("channels=4")] = "channels=6"
    result = CliRunner().invoke(_cli, args)
    assert result.exit_code == 2
    assert "architecture" in result.output and "channels" in result.output
    assert len(result.output.strip().splitlines()) == 1
