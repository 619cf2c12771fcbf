"""Lightning pieces: the training system, the data module and the history callback.

The network stays a plain :class:`ras2s.model.RAS2S`; this module holds the loss, the
optimiser, the schedules, on-the-fly noise and validation.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import metrics
from ..data.dataset import EpochSampler, MixedBatchSampler, PatchDataset, StorePatches
from ..data.prepare import load_manifest
from ..errors import InputError
from ..model import RAS2S, RAS2SConfig
from ..noise import add_noise
from ..precision import apply_precision
from .config import TrainConfig, from_dict
from .noise_schedule import (
    apply_intensity,
    cooldown_factor_at,
    crop_bands,
    intensity_draws,
    lr_factor_at,
    noise_kind_at,
    noisy_batch,
)


class RAS2SSystem(L.LightningModule):
    """Loss, optimiser, schedules, training noise and validation around :class:`RAS2S`.

    Parameters
    ----------
    config:
        The run's :class:`TrainConfig` (a plain dict is accepted, as saved in checkpoints).

    With ``ema_decay > 0`` an exponential moving average of the weights is kept in
    ``self.ema`` (a second :class:`RAS2S`, saved in the checkpoint, so a resumed run
    continues it exactly): after every optimiser step ``ema += (1 - d) (w - ema)`` with
    ``d = min(ema_decay, (1 + n) / (10 + n))``, ``n`` the updates so far (the warm-up lets
    it follow the fast early changes). Validation scores the average (``mpsnr`` ...) and
    the raw weights (``raw_mpsnr`` ...), and ``ras2s export`` exports the average.
    """

    def __init__(self, config: TrainConfig | dict) -> None:
        super().__init__()
        cfg = config if isinstance(config, TrainConfig) else from_dict(config)
        self.cfg = cfg
        self.save_hyperparameters({"config": cfg.to_dict()})
        # channels-last parameters: the fast convolution path for float32 and for
        # Lightning's bf16-mixed alike (see ras2s.precision)
        self.model = apply_precision(RAS2S(RAS2SConfig(**cfg.arch())), "fp32")
        self.ema: RAS2S | None = None
        self.ema_updates = 0
        if cfg.ema_decay > 0:
            self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.loss_fn = torch.nn.L1Loss() if cfg.loss == "l1" else torch.nn.MSELoss()
        self.history: list[dict] = []
        self.wall_time_s = 0.0
        self._t0: float | None = None
        self._total_steps: int | None = None

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Denoise ``(N, bands, H, W)`` with the wrapped network."""
        return self.model(noisy)

    # -- schedules -------------------------------------------------------------------
    def total_steps(self) -> int:
        """Optimiser steps of the whole run (Lightning's estimate, cached)."""
        if self._total_steps is None:
            self._total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        return self._total_steps

    def progress(self) -> float:
        """Fraction of the run done: steps, or wall time when ``max_time`` is set.

        With ``max_time`` the schedules follow whichever of steps and elapsed time is
        further along, so a run cut short by the clock still completes its learning-rate
        and noise schedules (such runs are not bit-reproducible).
        """
        done = self.global_step / self.total_steps()
        if self.cfg.max_time and self._trainer is not None:
            from lightning.pytorch.callbacks import Timer

            for cb in self.trainer.callbacks:
                if isinstance(cb, Timer) and cb._duration:
                    done = max(done, cb.time_elapsed("train") / cb._duration)
        return min(done, 1.0)

    def noise_kind(self) -> str:
        """The training noise kind of the current stage."""
        return noise_kind_at(self.progress(), self.cfg.noise_stages)

    def _stage_index(self, kind: str) -> int:
        return [k for _, k in self.cfg.noise_stages].index(kind)

    def configure_optimizers(self):
        """Adam, the per-step multi-step learning-rate schedule and its optional cooldown."""
        cfg = self.cfg
        opt = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )

        def factor(step: int) -> float:
            if self._trainer is None:
                return lr_factor_at(0.0, cfg.lr_milestones, cfg.lr_factors)
            return lr_factor_at(
                self.progress(), cfg.lr_milestones, cfg.lr_factors
            ) * cooldown_factor_at(
                self.global_step, self.total_steps(), cfg.lr_cooldown_steps, cfg.lr_cooldown_to
            )

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- training --------------------------------------------------------------------
    def training_step(self, clean: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Noise a clean batch on the fly (seeded by step and rank) and return the loss.

        With ``band_crop`` the batch is first cut to a band window (:func:`crop_bands`,
        its own generator per step and rank), so a resumed run cuts the same windows;
        with ``intensity_scale`` each clean sample is then mapped to a random range
        (:func:`map_intensity`, a third generator), and the loss compares the network's
        output with the mapped clean batch.
        """
        kind = self.noise_kind()
        # One generator per (seed, step, rank): a resumed run draws the same noise.
        rng = np.random.default_rng([self.cfg.seed, self.global_step, self.global_rank, 1])
        clean_np = clean.detach().cpu().numpy()
        if self.cfg.band_crop is not None:
            crop_rng = np.random.default_rng([self.cfg.seed, self.global_step, self.global_rank, 2])
            clean_np = crop_bands(clean_np, *self.cfg.band_crop, crop_rng)
            clean = torch.from_numpy(clean_np).to(clean.device, clean.dtype)
        scales = None
        if self.cfg.intensity_scale is not None:
            gain_rng = np.random.default_rng([self.cfg.seed, self.global_step, self.global_rank, 3])
            cfg = self.cfg
            n = clean_np.shape[0]
            draws = intensity_draws(
                n, cfg.intensity_scale, cfg.intensity_offset, cfg.intensity_prob, gain_rng
            )
            clean_np = apply_intensity(clean_np, *draws)
            clean = torch.from_numpy(clean_np).to(clean.device, clean.dtype)
            scales = draws[0]
        noisy = noisy_batch(clean_np, kind, rng)
        noisy = torch.from_numpy(noisy).to(clean.device, clean.dtype)
        if scales is not None and self.cfg.intensity_loss_per_scale:
            loss = self.per_scale_loss(self.model(noisy), clean, scales)
        else:
            loss = self.loss_fn(self.model(noisy), clean)
        self.log("train/loss", loss, prog_bar=True, batch_size=clean.shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=clean.shape[0])
        self.log("noise_stage", float(self._stage_index(kind)), batch_size=clean.shape[0])
        return loss

    def per_scale_loss(
        self, output: torch.Tensor, target: torch.Tensor, scales: np.ndarray
    ) -> torch.Tensor:
        """The batch loss with each sample's loss divided by its intensity ``scales``.

        ``output`` and ``target`` ``(N, B, H, W)``; ``scales`` ``(N,)`` positive. L1: the
        mean absolute error of sample ``i`` divided by ``scales[i]``; l2: the mean squared
        error divided by ``scales[i] ** 2``; then the mean over samples (equal sample
        sizes, so with every scale 1 this is the plain loss).
        """
        error = (output - target).float()
        power = 1 if self.cfg.loss == "l1" else 2
        per_sample = error.abs().pow(power).flatten(1).mean(dim=1)
        weights = torch.as_tensor(scales, dtype=per_sample.dtype, device=per_sample.device)
        return (per_sample / weights.pow(power)).mean()

    def on_train_start(self) -> None:
        """Set the current learning rate from the schedule; start the training wall clock.

        A fresh run starts at the schedule's first rate anyway; a resumed one would start
        at the rate the checkpoint saved, which is the schedule's own unless the config
        changed ``lr`` or the schedule at the resume (a cooldown branch that switches the
        milestones off): then the first steps would run at a stale rate.
        """
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            groups = scheduler.optimizer.param_groups
            for group, base, rate in zip(
                groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
            ):
                group["lr"] = base * rate(scheduler.last_epoch)
        self._t0 = time.monotonic()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Update the weight average; accumulate training wall time (kept across resumes)."""
        if self.ema is not None:
            self.update_ema()
        now = time.monotonic()
        if self._t0 is not None:
            self.wall_time_s += now - self._t0
        self._t0 = now

    @torch.no_grad()
    def update_ema(self) -> None:
        """One step of the weight average towards the current weights."""
        decay = min(self.cfg.ema_decay, (1 + self.ema_updates) / (10 + self.ema_updates))
        averaged = list(self.ema.parameters()) + list(self.ema.buffers())
        current = list(self.model.parameters()) + list(self.model.buffers())
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        self.ema_updates += 1

    # -- validation ------------------------------------------------------------------
    def validation_step(self, batch, batch_idx: int) -> None:
        """Score the denoised fixed-noise validation patches (the average and the raw weights)."""
        noisy, clean = batch
        ref = clean.float().cpu().numpy()
        nets = {"": self.ema if self.ema is not None else self.model}
        if self.ema is not None:
            nets["raw_"] = self.model
        for prefix, net in nets.items():
            out = net(noisy).float().cpu().numpy()
            scores = np.array(
                [
                    [
                        metrics.mpsnr(o, r),
                        metrics.mssim(o, r, convention="paper"),
                        metrics.sam(o, r),
                    ]
                    for o, r in zip(out, ref, strict=True)
                ]
            )
            n = len(scores)
            for name, value in zip(("mpsnr", "mssim", "sam"), scores.mean(axis=0), strict=True):
                self.log(
                    f"val/{prefix}{name}", float(value), batch_size=n, sync_dist=True, prog_bar=True
                )

    def on_validation_epoch_end(self) -> None:
        """Append the epoch's validation figures to the history."""
        if self.trainer.sanity_checking:
            return
        m = self.trainer.callback_metrics
        row = {
            "epoch": self.current_epoch,
            "step": self.global_step,
            "wall_time_s": round(self.wall_time_s, 1),
        }
        keys = ("mpsnr", "mssim", "sam", "raw_mpsnr", "raw_mssim", "raw_sam")
        row |= {k: round(float(m[f"val/{k}"]), 5) for k in keys if f"val/{k}" in m}
        self.history.append(row)

    # -- checkpoint extras -----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the validation history and wall time in the checkpoint."""
        checkpoint["ras2s"] = {
            "history": list(self.history),
            "wall_time_s": self.wall_time_s,
            "total_steps": self.total_steps() if self._trainer is not None else None,
            "ema_updates": self.ema_updates,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the validation history, wall time and weight average.

        A checkpoint written without an average (an older run, or ``ema_decay`` switched
        on at resume) starts the average at its weights; one written with an average
        loaded into a run without one drops it.
        """
        extra = checkpoint.get("ras2s", {})
        self.history = list(extra.get("history", []))
        self.wall_time_s = float(extra.get("wall_time_s", 0.0))
        self.ema_updates = int(extra.get("ema_updates", 0))
        state = checkpoint["state_dict"]
        has_ema = any(k.startswith("ema.") for k in state)
        if self.ema is not None and not has_ema:
            state.update(
                {
                    f"ema.{k[len('model.') :]}": v
                    for k, v in list(state.items())
                    if k.startswith("model.")
                }
            )
            self.ema_updates = 0
        elif self.ema is None and has_ema:
            for key in [k for k in state if k.startswith("ema.")]:
                del state[key]
        self._optimiser_settings_from_config(checkpoint)

    def _optimiser_settings_from_config(self, checkpoint: dict) -> None:
        """Make the config's ``lr``, ``betas`` and ``weight_decay`` win over the checkpoint's.

        Lightning restores Adam's parameter groups and the scheduler's base rates from
        the checkpoint after this hook, so without it a resume with ``--set lr=...`` (or
        new betas or weight decay) would silently go on with the old values. Each change
        is reported on stderr; :meth:`on_train_start` then sets the current rate from the
        (possibly new) schedule.
        """
        cfg = self.cfg
        wanted = {"initial_lr": cfg.lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay}
        changed: dict[str, tuple] = {}
        for opt_state in checkpoint.get("optimizer_states", []):
            for group in opt_state["param_groups"]:
                for key, value in wanted.items():
                    old = tuple(group[key]) if key == "betas" else group.get(key, value)
                    if old != value:
                        changed[key] = (old, value)
                        group[key] = value
        for sched_state in checkpoint.get("lr_schedulers", []):
            if "base_lrs" in sched_state:
                sched_state["base_lrs"] = [cfg.lr] * len(sched_state["base_lrs"])
        for key, (old, new) in changed.items():
            name = "lr" if key == "initial_lr" else key
            print(f"resume: {name} {old} -> {new} (the config's)", file=sys.stderr)


class PatchDataModule(L.LightningDataModule):
    """Training patches and a fixed noisy validation set.

    Training patches are augmented, epoch-seeded and sharded per rank; the validation
    set is ``val_max_patches`` patches evenly spread over the val split, each noised
    with ``default_rng([val_seed, index])`` under ``val_noise``.
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.cfg = config
        self.root = Path(config.data)
        self.manifest = load_manifest(self.root)
        self.train_set: PatchDataset | None = None
        self.mix_sets: list[PatchDataset] = []
        self.val_set: TensorDataset | None = None
        self.noisy_scores: dict[str, float] = {}

    def setup(self, stage: str | None = None) -> None:
        """Open the training patches; build the noisy validation set once."""
        cfg = self.cfg
        files = self.manifest["files"]
        self.train_set = self._training_patches(self.root, files["train"])
        self.mix_sets = [
            self._training_patches(Path(store), load_manifest(Path(store))["files"]["train"])
            for store, _ in cfg.mix_stores
        ]
        for (store, _), patches in zip(cfg.mix_stores, self.mix_sets, strict=True):
            if len(patches) == 0:
                raise InputError(f"{store}: no training patches to mix in")
            if cfg.band_crop is not None and patches.shape[1] < cfg.band_crop[0]:
                raise InputError(
                    f"{store}: {patches.shape[1]} bands per patch, fewer than band_crop "
                    f"needs ({cfg.band_crop[0]})"
                )
        if self.manifest["counts"].get("val", 0) and self.val_set is None:
            val = np.load(self.root / files["val"], mmap_mode="r")
            n = min(cfg.val_max_patches, len(val))
            idx = np.unique(np.round(np.linspace(0, len(val) - 1, n)).astype(int))
            clean = np.stack([np.array(val[i], dtype=np.float32) for i in idx])
            noisy = np.stack(
                [
                    add_noise(c, cfg.val_noise, rng=np.random.default_rng([cfg.val_seed, int(i)]))
                    for c, i in zip(clean, idx, strict=True)
                ]
            ).astype(np.float32)
            pairs = list(zip(noisy, clean, strict=True))
            self.noisy_scores = {
                "mpsnr": float(np.mean([metrics.mpsnr(a, b) for a, b in pairs])),
                "mssim": float(
                    np.mean([metrics.mssim(a, b, convention="paper") for a, b in pairs])
                ),
                "sam": float(np.mean([metrics.sam(a, b) for a, b in pairs])),
            }
            self.val_set = TensorDataset(torch.from_numpy(noisy), torch.from_numpy(clean))

    def _training_patches(self, root: Path, name: str) -> PatchDataset:
        cfg = self.cfg
        return PatchDataset(
            root / name, augment=cfg.augment, spectral_flip=cfg.spectral_flip, seed=cfg.seed
        )

    def train_dataloader(self) -> DataLoader:
        """Training batches from an epoch-seeded, rank-sharded sampler (and mixed-in stores)."""
        trainer = self.trainer
        rank = trainer.global_rank if trainer else 0
        sampler = EpochSampler(
            len(self.train_set),
            seed=self.cfg.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=rank,
            epoch_fn=(lambda: trainer.current_epoch) if trainer else None,
        )
        if self.mix_sets:
            batches = MixedBatchSampler(
                sampler,
                self.cfg.batch_size,
                [len(m) for m in self.mix_sets],
                [p for _, p in self.cfg.mix_stores],
                seed=self.cfg.seed,
                rank=rank,
            )
            return DataLoader(
                StorePatches([self.train_set, *self.mix_sets]),
                batch_sampler=batches,
                num_workers=self.cfg.num_workers,
                persistent_workers=False,
            )
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,
        )

    def val_dataloader(self) -> DataLoader | list:
        """The fixed noisy validation set (none when the split is empty)."""
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, shuffle=False)


class ProgressLine(L.Callback):
    """One line on stderr every ``every`` steps (for logs, where no progress bar shows)."""

    def __init__(self, every: int = 10) -> None:
        self.every = max(1, every)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Print step, loss, learning rate and noise kind."""
        step = trainer.global_step
        if trainer.is_global_zero and step % self.every == 0:
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            print(
                f"step {step}/{pl_module.total_steps()} epoch {trainer.current_epoch} "
                f"loss {loss:.5f} lr {lr:.2e} noise {pl_module.noise_kind()}",
                file=sys.stderr,
                flush=True,
            )

    def on_validation_end(self, trainer, pl_module) -> None:
        """Print the validation figures."""
        if trainer.is_global_zero and pl_module.history:
            print(f"validation {pl_module.history[-1]}", file=sys.stderr, flush=True)
