"""Build the Lightning trainer from a :class:`TrainConfig` and run it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import InputError
from ..io import write_text_atomically
from ..precision import training_precision
from .config import TrainConfig, dump_config
from .system import PatchDataModule, ProgressLine, RAS2SSystem


def _loggers(out: Path) -> list:
    loggers = [CSVLogger(out, name="logs", version="")]
    try:
        import tensorboard  # noqa: F401  (TensorBoardLogger only when it can write)
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out, name="tb", version=""))
    except ImportError:
        pass
    return loggers


def keep_earlier_metrics(out: Path, step: int) -> Path | None:
    """Move ``<out>/logs/metrics.csv`` to ``metrics-until-step-<step>.csv``; return it.

    Lightning's CSV logger deletes an existing ``metrics.csv`` when it starts, so a
    resumed run would lose the rows of the sessions before it. Called on rank 0 before a
    resume; nothing happens when there is no such file.
    """
    metrics = out / "logs" / "metrics.csv"
    if not metrics.is_file():
        return None
    kept = metrics.with_name(f"metrics-until-step-{step}.csv")
    metrics.replace(kept)
    return kept


class SaveLast(L.Callback):
    """Write ``last.ckpt`` at the end of every epoch and at the end of training.

    Lightning's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it
    also writes a top-k checkpoint (since Lightning 2.2): in a run whose validation
    stopped improving, ``last.ckpt`` stayed at the best step, and a resume went back to
    it. Here it follows every epoch end (after validation, so the checkpoint holds that
    validation), and the end of training when ``max_steps`` stops a run within an
    epoch. Runs in every training process (whatever the launcher); after an
    interruption nothing more is written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved_step: int | None = None

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.interrupted:
            return
        if self.saved_step != trainer.global_step:
            trainer.save_checkpoint(self.path)
            self.saved_step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save after the epoch (and its validation)."""
        self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final step when it fell within an epoch."""
        self._save(trainer)


class DurableCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made crash-safe like every other ras2s write.

    Each checkpoint (``last.ckpt``, the best one) goes to a temporary file beside its
    target, is flushed to the disk, renamed onto the target, and the folder is flushed
    (:func:`ras2s.io.atomic_path`): a crash or power loss leaves the old checkpoint or
    the complete new one, never a torn ``last.ckpt`` that a resume would choke on.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Write ``checkpoint`` to ``path`` atomically and durably."""
        from ..io import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            torch.save(checkpoint, handle)


def build_trainer(cfg: TrainConfig, callbacks: tuple = (), **overrides) -> L.Trainer:
    """A Lightning trainer for ``cfg`` writing into ``cfg.out``."""
    out = Path(cfg.out)
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best-{epoch}-{step}",
        monitor="val/mpsnr",
        mode="max",
        save_top_k=1,
        save_last=False,  # SaveLast writes last.ckpt after every epoch
        enable_version_counter=False,
    )
    kwargs = dict(
        default_root_dir=out,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        max_time=cfg.max_time,
        limit_train_batches=cfg.steps_per_epoch or 1.0,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        accelerator=cfg.accelerator,
        strategy=cfg.strategy,
        precision=training_precision(cfg.precision, cfg.accelerator),
        gradient_clip_val=cfg.grad_clip,
        log_every_n_steps=cfg.log_every,
        logger=_loggers(out),
        callbacks=[ckpt, SaveLast(out / "checkpoints" / "last.ckpt"), *callbacks]
        + ([] if sys.stderr.isatty() else [ProgressLine(cfg.log_every)]),
        plugins=[DurableCheckpointIO()],
        use_distributed_sampler=False,  # EpochSampler shards by rank itself
        num_sanity_val_steps=0,
        enable_progress_bar=sys.stderr.isatty(),
        deterministic=False,
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def initialise_from(model: torch.nn.Module, weights: str) -> None:
    """Copy ``weights`` (``default``, ``official`` or a checkpoint path) into ``model``.

    For fine-tuning: the architecture of the weights must be the run's (``channels``,
    ``regions``, ``reach``), else :class:`~ras2s.errors.InputError` names both.
    """
    from ..weights import load_model

    source = load_model(weights, precision="fp32")
    if source.config != model.config:
        raise InputError(
            f"--init {weights}: its architecture {source.config.to_dict()} differs from the "
            f"run's {model.config.to_dict()} (set channels/regions/reach to match)"
        )
    model.load_state_dict(source.state_dict())


def fit(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    callbacks: tuple = (),
    command: list[str] | None = None,
    **trainer_overrides,
) -> tuple[L.Trainer, RAS2SSystem]:
    """Train; with ``resume`` continue from ``<out>/checkpoints/last.ckpt``."""
    if not cfg.data:
        raise InputError("no training data: pass --data DIR (a folder written by `ras2s prepare`)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise InputError(f"--resume: {last} does not exist")
    if not resume and last.is_file():
        raise InputError(f"{out} already holds a run; use --resume or another --out")
    if resume and int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
        step = torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0)
        keep_earlier_metrics(out, int(step))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = PatchDataModule(cfg)
    system = RAS2SSystem(cfg)
    if cfg.init and not resume:  # a resumed run restores its own weights
        initialise_from(system.model, cfg.init)
        if system.ema is not None:  # the average starts at the initial weights
            system.ema.load_state_dict(system.model.state_dict())
    trainer = build_trainer(cfg, callbacks, **trainer_overrides)
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
        run = {"command": command or sys.argv, "resume": resume}
        with open(out / "commands.jsonl", "a") as handle:
            handle.write(json.dumps(run) + "\n")
    trainer.fit(system, datamodule=data, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero and data.noisy_scores:
        write_text_atomically(out / "val_noisy.json", json.dumps(data.noisy_scores, indent=1))
    return trainer, system
