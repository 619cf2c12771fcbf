"""``ras2s prepare``, ``ras2s train`` and ``ras2s export``: the training workflow.

Importing this module needs neither Lightning nor PyYAML: they are imported inside the
commands that use them (the ``[train]`` extra); without them a command says which extra
to install (:func:`ras2s.cli.options.handle_errors`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import options

__all__ = ["export", "prepare", "train"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@click.command()
@click.argument("src_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@options.output(
    "Patch store to write: a folder for train.npy, val.npy and manifest.json.",
    required=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--crop",
    default=1024,
    show_default=True,
    help="Centre crop side in pixels (the whole image when smaller; 0: no crop).",
)
@click.option("--patch", default=64, show_default=True, help="Patch side in pixels.")
@click.option(
    "--scales", default="1,0.5,0.25", show_default=True, help="Comma-separated spatial scales."
)
@click.option(
    "--strides",
    default="64,32,32",
    show_default=True,
    help="Comma-separated strides, one per scale.",
)
@click.option(
    "--val-images",
    default=0,
    show_default=True,
    help="Hold out this many source cubes (chosen with --seed) for validation.",
)
@click.option(
    "--val-list",
    default=None,
    help="Comma-separated cube names (file name, stem or relative path) to hold out.",
)
@click.option("--patch-bands", default=None, type=int, help="Bands per patch (see --band-rule).")
@click.option(
    "--band-rule",
    type=click.Choice(["error", "select", "window"]),
    default="error",
    show_default=True,
    help="Unequal band counts: error; select N evenly spaced bands; or cut windows "
    "of N consecutive bands.",
)
@options.key
@options.layout
@click.option("--exclude", default=None, help="Comma-separated cube names to leave out.")
@click.option(
    "--skip-unreadable",
    is_flag=True,
    help="Skip (and record in the manifest) files that are not readable cubes.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the validation draw.",
)
@options.force
@options.handle_errors
def prepare(
    src_dir,
    output,
    crop,
    patch,
    scales,
    strides,
    val_images,
    val_list,
    patch_bands,
    band_rule,
    key,
    layout,
    exclude,
    skip_unreadable,
    seed,
    force,
) -> None:
    """Cut normalised training patches from the clean cubes under SRC_DIR.

    Every cube is min-max normalised to [0, 1] as a whole, centre cropped, resampled to
    each scale and cut into patches (bands first, float32). The split into training and
    validation is by cube, never by patch.
    """
    from ..data.prepare import PrepareConfig
    from ..data.prepare import prepare as run_prepare

    config = PrepareConfig(
        crop=crop or None,
        patch=patch,
        scales=_floats(scales),
        strides=_ints(strides),
        val_images=val_images,
        val_list=tuple(val_list.split(",")) if val_list else (),
        bands=patch_bands,
        band_rule=band_rule,
        key=key,
        layout=layout.upper() if layout else None,
        seed=seed,
        skip_unreadable=skip_unreadable,
        exclude=tuple(exclude.split(",")) if exclude else (),
    )
    manifest = run_prepare(
        src_dir,
        output,
        config,
        force=force,
        log=lambda m: click.echo(m, err=True),
        command=["ras2s", *sys.argv[1:]],
    )
    counts = manifest["counts"]
    click.echo(
        f"{output}: {counts['train']} training and {counts['val']} validation patches "
        f"of {manifest['bands']} x {patch} x {patch} from {len(manifest['sources'])} cubes"
    )


def _mix_store(item: str) -> tuple[str, float]:
    """``STORE=P`` -> ``(STORE, P)``; the store must hold a manifest.json."""
    from ..errors import InputError

    store, sep, prob = item.rpartition("=")
    try:
        p = float(prob)
    except ValueError:
        p = None
    if not sep or not store or p is None:
        raise InputError(f"--mix expects STORE=P, got {item!r}")
    if not (Path(store) / "manifest.json").is_file():
        raise InputError(f"--mix {store}: not a patch store (no manifest.json)")
    return store, p


@click.command()
@click.option(
    "--patches",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A patch store written by `ras2s prepare`.",
)
@click.option(
    "--mix",
    "mix",
    multiple=True,
    metavar="STORE=P",
    help="Mix in another patch store (repeatable): each training batch comes from STORE "
    "with probability P (its band count and patch size may differ); config mix_stores.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file of TrainConfig fields.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field (repeatable), e.g. --set lr=5e-4.",
)
@click.option("--devices", type=int, help="Devices per node.")
@click.option("--num-nodes", type=int, help="Number of nodes.")
@click.option("--strategy", help="Lightning strategy (auto, ddp, ddp_spawn, ...).")
@click.option("--accelerator", help="cpu, gpu or auto.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "32", "bf16-mixed", "16-mixed"]),
    help="Lightning precision; auto = bf16-mixed where the device computes bfloat16 "
    "natively, else 32 (default: the config's, 32).",
)
@click.option(
    "--init",
    help="Start from these weights instead of a random initialisation (fine-tuning): "
    "default, official or a checkpoint path, of the run's architecture.",
)
@click.option("--max-epochs", type=int)
@click.option("--max-steps", type=int)
@options.output("Run folder (config.yaml, checkpoints/, logs/).")
@click.option("--resume", is_flag=True, help="Continue from <out>/checkpoints/last.ckpt.")
@options.handle_errors
def train(
    patches,
    mix,
    config_path,
    overrides,
    devices,
    num_nodes,
    strategy,
    accelerator,
    precision,
    init,
    max_epochs,
    max_steps,
    output,
    resume,
) -> None:
    """Train RAS2S on a patch store (noise added on the fly; the paper's recipe by default).

    Noise levels follow the paper's 0-255 naming (noniid draws sigma per band from
    {10, 30, 50, 70}/255).
    """
    from ..train.config import apply_overrides, from_dict, load_config
    from ..train.run import fit

    cfg = load_config(config_path)
    if resume and config_path is None:
        saved = Path(output or cfg.out) / "config.yaml"
        if saved.is_file():  # resume with the run's own config, --set and options on top
            cfg = load_config(saved)
    cli = {
        "data": str(patches),
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
        "accelerator": accelerator,
        "precision": precision,
        "init": init,
        "max_epochs": max_epochs,
        "max_steps": max_steps,
        "out": output,
    }
    if mix:
        cli["mix_stores"] = [_mix_store(item) for item in mix]
    cfg = apply_overrides(cfg, list(overrides))
    cfg = from_dict({k: v for k, v in cli.items() if v is not None}, cfg)
    trainer, system = fit(cfg, resume=resume, command=["ras2s", *sys.argv[1:]])
    if trainer.is_global_zero and system.history:
        last = system.history[-1]
        click.echo(
            f"done: step {trainer.global_step}, val MPSNR {last.get('mpsnr')}, "
            f"checkpoints in {Path(cfg.out) / 'checkpoints'}"
        )


@click.command()
@click.argument("ckpt", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@options.output(
    "Inference checkpoint to write (the card goes beside it as .json).",
    required=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--patches",
    type=click.Path(file_okay=False),
    help="Patch store, if moved since training (for the card's data section).",
)
@click.option(
    "--card-extra",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file of extra top-level card fields (notes, evaluation tables).",
)
@click.option(
    "--which",
    type=click.Choice(["average", "last"]),
    default=None,
    help="Export the weight average (the default when the run kept one) or the last weights.",
)
@click.option(
    "--normalise",
    type=click.Choice(["clean", "minmax", "percentile"]),
    default=None,
    help="Record how `ras2s denoise` (--normalise auto) should normalise a cube for these "
    "weights (default: nothing recorded, which means clean, the estimated clean range); "
    "choose by measuring with `ras2s evaluate --methods "
    "ras2s-denoise-clean,ras2s-denoise-minmax,ras2s-denoise-percentile`.",
)
@click.option(
    "--band-window",
    type=options.BandWindowType(),
    default="auto",
    show_default=True,
    help="Record how many bands `ras2s denoise` (--band-window auto) runs at once with "
    "these weights: auto: the patch store's band count (the trained sequence length); "
    "none: whole cubes; or a number. Measure with `ras2s evaluate --band-window`.",
)
@options.force
@options.handle_errors
def export(ckpt, output, patches, card_extra, which, normalise, band_window, force) -> None:
    """Turn a training checkpoint into weights for `ras2s denoise --weights PATH`."""
    from ..errors import OutputError
    from ..train.export import export as run_export

    if not force and (output.exists() or output.with_suffix(".json").exists()):
        raise OutputError(f"{output} (or its .json card) exists; use --force")
    extra = None
    if card_extra is not None:
        import json

        try:
            extra = json.loads(card_extra.read_text())
        except ValueError as err:
            raise click.BadParameter(f"{card_extra}: not JSON ({err})") from None
        if not isinstance(extra, dict):
            raise click.BadParameter(f"{card_extra}: must hold a JSON object")
    weights, card = run_export(
        ckpt,
        output,
        data_dir=patches,
        extra=extra,
        which=which,
        normalise=normalise,
        band_window=band_window,
        force=force,
    )
    click.echo(f"wrote {weights} and {card}")
