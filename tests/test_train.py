"""Training: config, schedules, resume, DDP on CPU, export, CLI commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ras2s.errors import InputError
from ras2s.train.config import TrainConfig, apply_overrides, dump_config, load_config
from ras2s.train.noise_schedule import (
    cooldown_factor_at,
    crop_bands,
    intensity_draws,
    lr_factor_at,
    map_intensity,
    noise_kind_at,
    noisy_batch,
)

from .conftest import tiny_store

pytest.importorskip("lightning")
import lightning as L  # noqa: E402

TINY = dict(
    channels=4,
    regions=2,
    reach=1,
    batch_size=2,
    val_max_patches=2,
    threads=1,
    log_every=1,
    steps_per_epoch=2,
    noise_stages=((0.0, "noniid"), (0.5, "complex")),
)


def _cfg(store: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(data=str(store), out=str(out), **{**TINY, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


def test_config_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.loss, c.lr, c.betas, c.batch_size, c.max_epochs) == ("l1", 1e-3, (0.9, 0.99), 8, 90)
    # authors: lr x1 epochs 1-5, x0.5 6-15, x0.2 16-25, x0.1 26-50, x0.05 51-90
    per_epoch = [lr_factor_at(e / 90, c.lr_milestones, c.lr_factors) for e in range(90)]
    assert per_epoch[:5] == [1.0] * 5 and per_epoch[5:15] == [0.5] * 10
    assert per_epoch[15:25] == [0.2] * 10 and per_epoch[25:50] == [0.1] * 25
    assert per_epoch[50:] == [0.05] * 40
    assert noise_kind_at(0.3, ((0.0, "noniid"), (0.25, "complex"))) == "complex"
    assert noise_kind_at(0.2, ((0.0, "noniid"), (0.25, "complex"))) == "noniid"


def test_config_yaml_round_trip_and_overrides(tmp_path):
    c = apply_overrides(
        TrainConfig(),
        [
            "lr=5e-4",
            "betas=[0.8, 0.9]",
            "max_time=null",
            "noise_stages=[[0, noniid], [0.1, complex]]",
        ],
    )
    assert c.lr == 5e-4 and c.betas == (0.8, 0.9)
    assert c.noise_stages == ((0.0, "noniid"), (0.1, "complex"))
    assert load_config(dump_config(c, tmp_path / "c.yaml")) == c
    with pytest.raises(InputError, match="unknown config key"):
        apply_overrides(c, ["learning_rate=1"])
    with pytest.raises(InputError, match="key=value"):
        apply_overrides(c, ["lr"])
    with pytest.raises(InputError, match="unknown noise case|noise case"):
        apply_overrides(c, ["val_noise=nonsense"])


def test_training_noise_is_seeded():
    clean = np.full((3, 6, 8, 8), 0.5, np.float32)
    a = noisy_batch(clean, "complex", np.random.default_rng(1))
    b = noisy_batch(clean, "complex", np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == clean.shape and not np.array_equal(a, clean)


def test_joined_noise_kinds_draw_one_part_per_sample():
    from ras2s.train.noise_schedule import COMPLEX_CASES, sample_case

    rng = np.random.default_rng(0)
    drawn = [sample_case("complex+blind", rng) for _ in range(400)]
    assert set(drawn) == {*COMPLEX_CASES, "blind"}
    assert 150 < drawn.count("blind") < 250  # half the samples, the other half complex
    assert sample_case("noniid", rng) == "noniid"
    assert TrainConfig(noise_stages=((0.0, "noniid+blind"),)).noise_stages[0][1] == "noniid+blind"
    with pytest.raises(InputError):
        TrainConfig(noise_stages=((0.0, "complex+nonsense"),))


def test_band_crop_draws_one_count_per_batch_and_a_window_per_sample():
    # band b of every sample holds the value b, so a crop shows which bands it kept
    clean = np.broadcast_to(np.arange(10, dtype=np.float32)[None, :, None, None], (5, 10, 4, 4))
    counts, starts = set(), set()
    for seed in range(200):
        out = crop_bands(clean, 3, 6, np.random.default_rng(seed))
        n, k = out.shape[:2]
        assert n == 5 and 3 <= k <= 6 and out.shape[2:] == (4, 4)
        for sample in out:
            first = int(sample[0, 0, 0])
            np.testing.assert_array_equal(sample[:, 0, 0], np.arange(first, first + k))
            starts.add(first)
        counts.add(k)
    assert counts == {3, 4, 5, 6} and starts == set(range(0, 8))
    # hi beyond the store's band count is capped at it; lo beyond it is an error
    assert {crop_bands(clean, 9, 40, np.random.default_rng(s)).shape[1] for s in range(50)} == {
        9,
        10,
    }
    with pytest.raises(InputError, match="at least 11 bands"):
        crop_bands(clean, 11, 12, np.random.default_rng(0))
    with pytest.raises(InputError, match="band_crop"):
        TrainConfig(band_crop=(6, 3))


class _StopAfterFirstEpoch(L.Callback):
    """Simulate an interruption at the end of the first epoch (after its checkpoint)."""

    def on_validation_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_map_intensity_maps_each_sample_to_its_own_range():
    clean = np.broadcast_to(
        np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4), (400, 3, 4, 4)
    )
    out = map_intensity(clean, (0.5, 2.0), (-0.2, 0.3), 0.75, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == clean.shape
    lo, hi = out.min(axis=(1, 2, 3)), out.max(axis=(1, 2, 3))
    scale, offset = hi - lo, lo  # x spans exactly [0, 1], so each sample's range shows its map
    kept = np.isclose(scale, 1) & np.isclose(offset, 0)
    assert 0.15 < kept.mean() < 0.35  # about 1 - prob of the samples are left as they were
    assert np.all((scale[~kept] >= 0.5 - 1e-6) & (scale[~kept] <= 2.0 + 1e-6))
    assert np.all((offset[~kept] >= -0.2 - 1e-6) & (offset[~kept] <= 0.3 + 1e-6))
    assert (scale[~kept] > 1.4).any() and (scale[~kept] < 0.7).any()  # the whole range is drawn
    # an affine map per sample: every band and pixel of a sample shares it
    np.testing.assert_allclose(
        out, offset[:, None, None, None] + scale[:, None, None, None] * clean, atol=1e-6
    )
    same = map_intensity(clean, (0.5, 2.0), (-0.2, 0.3), 0.75, np.random.default_rng(0))
    np.testing.assert_array_equal(out, same)
    with pytest.raises(InputError, match="intensity_scale"):
        TrainConfig(intensity_scale=(0.0, 1.0))
    with pytest.raises(InputError, match="intensity_prob"):
        TrainConfig(intensity_scale=(0.5, 2.0), intensity_prob=1.5)


@pytest.mark.parametrize(
    "augment",
    [{}, {"band_crop": (3, 6)}, {"intensity_scale": (0.6, 1.6), "intensity_offset": (-0.2, 0.2)}],
    ids=["all-bands", "band-crop", "intensity"],
)
def test_resume_gives_the_same_weights(store, tmp_path, augment):
    from ras2s.train.run import fit

    cfg = dict(max_steps=4, **augment)
    fit(_cfg(store, tmp_path / "full", **cfg))
    fit(_cfg(store, tmp_path / "split", **cfg), callbacks=(_StopAfterFirstEpoch(),))
    half = torch.load(tmp_path / "split/checkpoints/last.ckpt", weights_only=True)
    assert half["global_step"] == 2
    with pytest.raises(InputError, match="--resume"):
        fit(_cfg(store, tmp_path / "split", **cfg))
    fit(_cfg(store, tmp_path / "split", **cfg), resume=True)
    full = _weights(tmp_path / "full/checkpoints/last.ckpt")
    split = _weights(tmp_path / "split/checkpoints/last.ckpt")
    assert (
        torch.load(tmp_path / "split/checkpoints/last.ckpt", weights_only=True)["global_step"] == 4
    )
    for key in full:
        torch.testing.assert_close(split[key], full[key], rtol=0, atol=1e-6, msg=key)
    assert (tmp_path / "full/config.yaml").is_file()
    assert (tmp_path / "full/logs/metrics.csv").is_file()
    # the first session's logged rows survive the resume (Lightning deletes metrics.csv)
    logs = tmp_path / "split/logs"
    with open(logs / "metrics-until-step-2.csv") as a, open(logs / "metrics.csv") as b:
        earlier, later = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert {int(r["step"]) for r in earlier} == {0, 1}
    assert {int(r["step"]) for r in later} == {3, 4}


class _BandCounts(L.Callback):
    """Record the band count of every training batch."""

    def __init__(self) -> None:
        self.bands: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.bands.append(int(batch.shape[1]))


def test_mixed_in_store_reaches_training_and_resumes_exactly(store, store6, tmp_path):
    from ras2s.train.run import fit

    cfg = dict(max_steps=6, steps_per_epoch=3, mix_stores=((str(store6), 0.5),))
    seen = _BandCounts()
    fit(_cfg(store, tmp_path / "full", **cfg), callbacks=(seen,))
    assert set(seen.bands) == {8, 6}  # batches of both stores, each whole
    fit(_cfg(store, tmp_path / "split", **cfg), callbacks=(_StopAfterFirstEpoch(),))
    fit(_cfg(store, tmp_path / "split", **cfg), resume=True)
    full = _weights(tmp_path / "full/checkpoints/last.ckpt")
    split = _weights(tmp_path / "split/checkpoints/last.ckpt")
    for key in full:
        torch.testing.assert_close(split[key], full[key], rtol=0, atol=1e-6, msg=key)
    # the same run without mixing trains on the run's own store only, and differs
    alone = _BandCounts()
    fit(_cfg(store, tmp_path / "alone", max_steps=6, steps_per_epoch=3), callbacks=(alone,))
    assert set(alone.bands) == {8}
    own = _weights(tmp_path / "alone/checkpoints/last.ckpt")
    assert any(not torch.equal(own[k], full[k]) for k in full)


def test_mixed_in_store_too_short_for_band_crop_is_an_error(store, store6, tmp_path):
    from ras2s.train.run import fit

    cfg = _cfg(
        store, tmp_path / "run", max_steps=1, band_crop=(7, 8), mix_stores=((str(store6), 0.3),)
    )
    with pytest.raises(InputError, match="6 bands per patch, fewer than band_crop"):
        fit(cfg)
    with pytest.raises(InputError, match="mix_stores probabilities"):
        _cfg(store, tmp_path / "run", mix_stores=((str(store6), 0.7), (str(store6), 0.4)))
    # a store whose cubes are all held out has nothing to mix in: named, before training
    empty = tiny_store(tmp_path / "held", ["v"], 8, seed=0, val_list=("v",))
    with pytest.raises(InputError, match=f"{empty}: no training patches to mix in"):
        fit(_cfg(store, tmp_path / "run2", max_steps=1, mix_stores=((str(empty), 0.3),)))


def test_weight_average_resumes_exactly_and_is_what_export_writes(store, tmp_path):
    from ras2s.train.export import export
    from ras2s.train.run import fit
    from ras2s.weights import load_model

    fit(_cfg(store, tmp_path / "full", max_steps=4, ema_decay=0.5))
    fit(
        _cfg(store, tmp_path / "split", max_steps=4, ema_decay=0.5),
        callbacks=(_StopAfterFirstEpoch(),),
    )
    fit(_cfg(store, tmp_path / "split", max_steps=4, ema_decay=0.5), resume=True)
    full = _weights(tmp_path / "full/checkpoints/last.ckpt")
    split = _weights(tmp_path / "split/checkpoints/last.ckpt")
    assert any(k.startswith("ema.") for k in full)
    for key in full:
        torch.testing.assert_close(split[key], full[key], rtol=0, atol=1e-6, msg=key)
    # the average is not the weights, and it is what export writes
    name = next(k for k in full if k.startswith("model.") and k.endswith("weight"))
    average = name.replace("model.", "ema.", 1)
    assert (full[name] - full[average]).abs().max() > 1e-6
    ckpt = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["ras2s"]["ema_updates"] == 4
    assert {"mpsnr", "raw_mpsnr"} <= set(ckpt["ras2s"]["history"][-1])
    weights, card = export(tmp_path / "full/checkpoints/last.ckpt", tmp_path / "w.pt")
    exported = load_model(weights, precision="fp32").state_dict()
    torch.testing.assert_close(exported[name.removeprefix("model.")], full[average])
    assert "moving average" in json.loads(card.read_text())["training"]["exported"]
    weights, card = export(tmp_path / "full/checkpoints/last.ckpt", tmp_path / "l.pt", which="last")
    exported = load_model(weights, precision="fp32").state_dict()
    torch.testing.assert_close(exported[name.removeprefix("model.")], full[name])
    assert "last step" in json.loads(card.read_text())["training"]["exported"]


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_the_per_scale_loss_weighs_a_brightened_sample_like_one_in_range(store, tmp_path, loss):
    from ras2s.train.system import RAS2SSystem

    system = RAS2SSystem(_cfg(store, tmp_path, loss=loss))
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.random((3, 5, 6, 6), dtype=np.float32))
    error = torch.from_numpy(rng.normal(0, 0.1, (3, 5, 6, 6)).astype(np.float32))
    scales = np.array([1.0, 2.5, 0.6])
    # sample i's error grows with its scale, as it does for a brightened patch
    scaled_error = error * torch.tensor(scales, dtype=torch.float32).view(3, 1, 1, 1)
    output = target + scaled_error
    weighed = system.per_scale_loss(output, target, scales)
    plain = system.loss_fn(target + error, target)  # the same errors, every sample at scale 1
    torch.testing.assert_close(weighed, plain)
    assert not torch.isclose(system.loss_fn(output, target), plain)  # unweighed: it differs
    ones = system.per_scale_loss(output, target, np.ones(3))
    torch.testing.assert_close(ones, system.loss_fn(output, target))


def test_a_run_with_the_per_scale_loss_trains_and_logs_a_finite_loss(store, tmp_path):
    from ras2s.train.run import fit

    cfg = _cfg(
        store, tmp_path, max_steps=2, intensity_scale=(0.5, 3.0), intensity_loss_per_scale=True
    )
    fit(cfg)
    rows = list(csv.DictReader((tmp_path / "logs/metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(np.isfinite(losses))


def test_intensity_draws_are_the_map_of_map_intensity():
    clean = np.random.default_rng(1).random((6, 2, 3, 3), dtype=np.float32)
    scales, offsets = intensity_draws(6, (0.5, 3.0), (-0.2, 0.2), 0.5, np.random.default_rng(4))
    mapped = map_intensity(clean, (0.5, 3.0), (-0.2, 0.2), 0.5, np.random.default_rng(4))
    np.testing.assert_allclose(
        mapped, offsets[:, None, None, None] + scales[:, None, None, None] * clean, rtol=1e-6
    )
    assert ((scales == 1.0) == (offsets == 0.0)).all() and (scales != 1.0).any()


def test_weight_average_follows_its_formula_and_can_be_switched_on_at_resume(store, tmp_path):
    from ras2s.train.run import fit
    from ras2s.train.system import RAS2SSystem

    system = RAS2SSystem(_cfg(store, tmp_path, ema_decay=0.9))
    start = {k: v.clone() for k, v in system.ema.state_dict().items()}
    with torch.no_grad():
        for p in system.model.parameters():
            p.add_(1.0)
    system.update_ema()  # first update: d = min(0.9, 1/10) = 0.1
    for key, value in system.ema.state_dict().items():
        torch.testing.assert_close(value, start[key] + 0.9, msg=key)
    # a run without an average, resumed with one: the average starts at its weights
    fit(_cfg(store, tmp_path / "run", max_steps=2), callbacks=(_StopAfterFirstEpoch(),))
    fit(_cfg(store, tmp_path / "run", max_steps=4, ema_decay=0.9), resume=True)
    state = _weights(tmp_path / "run/checkpoints/last.ckpt")
    assert any(k.startswith("ema.") for k in state)
    # and back: an average in the checkpoint is dropped by a run without one
    fit(_cfg(store, tmp_path / "run", max_steps=6), resume=True)
    assert not any(k.startswith("ema.") for k in _weights(tmp_path / "run/checkpoints/last.ckpt"))
    from ras2s.train.export import export

    with pytest.raises(InputError, match="no weight average"):
        export(tmp_path / "run/checkpoints/last.ckpt", tmp_path / "w.pt", which="average")
    with pytest.raises(InputError, match="ema_decay"):
        _cfg(store, tmp_path, ema_decay=1.0)


def test_a_run_continued_from_a_copied_checkpoint_updates_that_file(store, tmp_path):
    """The cross-session recipe: copy last.ckpt into a fresh folder, resume, copy it back."""
    import shutil

    from ras2s.train.run import fit

    fit(_cfg(store, tmp_path / "a", max_steps=4), callbacks=(_StopAfterFirstEpoch(),))
    moved = tmp_path / "b" / "checkpoints"
    moved.mkdir(parents=True)
    shutil.copy(tmp_path / "a/checkpoints/last.ckpt", moved / "last.ckpt")
    fit(_cfg(store, tmp_path / "b", max_steps=4), resume=True)
    assert torch.load(moved / "last.ckpt", weights_only=True)["global_step"] == 4
    assert not list(moved.glob("last-v*.ckpt"))


class _RecordLearningRates(L.Callback):
    def __init__(self) -> None:
        self.by_step: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.by_step[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]


def test_cooldown_factor_falls_linearly_over_the_last_steps():
    assert [cooldown_factor_at(s, 6, 4, 0.0) for s in range(6)] == [1, 1, 1, 0.75, 0.5, 0.25]
    assert [cooldown_factor_at(s, 4, 2, 0.5) for s in range(4)] == [1, 1, 1, 0.75]
    assert cooldown_factor_at(3, 4, 0, 0.0) == 1.0


def test_a_cooldown_branch_of_a_finished_run_decays_only_its_new_steps(store, tmp_path):
    """Warmup-stable-decay: a run at constant lr, resumed with a longer max_steps and a
    cooldown, trains its new steps at a falling learning rate."""
    from ras2s.train.run import fit

    flat = dict(lr=1e-3, lr_milestones=(), lr_factors=(), ema_decay=0.9)
    first = _RecordLearningRates()
    fit(_cfg(store, tmp_path / "run", max_steps=4, **flat), callbacks=(first,))
    assert first.by_step == dict.fromkeys(range(4), 1e-3)
    branch = _RecordLearningRates()
    fit(
        _cfg(store, tmp_path / "run", max_steps=8, lr_cooldown_steps=4, lr_cooldown_to=0.2, **flat),
        resume=True,
        callbacks=(branch,),
    )
    expected = {4: 1e-3, 5: 8e-4, 6: 6e-4, 7: 4e-4}
    assert branch.by_step.keys() == expected.keys()
    for step, lr in expected.items():
        assert branch.by_step[step] == pytest.approx(lr, rel=1e-9), step
    with pytest.raises(InputError, match="lr_cooldown_to"):
        _cfg(store, tmp_path, lr_cooldown_to=1.5)


def test_a_resume_takes_the_configs_learning_rate_betas_and_weight_decay(store, tmp_path, capsys):
    """Lightning restores Adam's settings from the checkpoint; ``--set lr=...`` at a resume
    must still take effect (it used to be ignored silently), keeping the schedule's factor."""
    from ras2s.train.run import fit

    halved = dict(lr_milestones=(0.25,), lr_factors=(0.5,))
    first = _RecordLearningRates()
    fit(_cfg(store, tmp_path / "run", max_steps=4, **halved), callbacks=(first,))
    assert first.by_step == {0: 1e-3, 1: 5e-4, 2: 5e-4, 3: 5e-4}
    capsys.readouterr()
    later = _RecordLearningRates()
    optimisers = []

    class _Optimiser(L.Callback):
        def on_train_end(self, trainer, pl_module):
            optimisers.append(trainer.optimizers[0].param_groups[0])

    changed = dict(lr=2e-4, betas=(0.8, 0.95), weight_decay=1e-5)
    fit(
        _cfg(store, tmp_path / "run", max_steps=8, **halved, **changed),
        resume=True,
        callbacks=(later, _Optimiser()),
    )
    assert later.by_step.keys() == {4, 5, 6, 7}
    for step, lr in later.by_step.items():
        assert lr == pytest.approx(1e-4, rel=1e-9), step  # the new rate x the schedule's 0.5
    (group,) = optimisers
    assert tuple(group["betas"]) == (0.8, 0.95) and group["weight_decay"] == 1e-5
    err = capsys.readouterr().err
    assert "resume: lr 0.001 -> 0.0002" in err and "resume: betas" in err
    assert "resume: weight_decay 0" in err


def test_a_resume_with_a_new_schedule_starts_at_its_rate(store, tmp_path):
    """A cooldown branch switches the milestones off: its first step runs at the new
    schedule's rate, not at the rate the checkpoint saved (the old schedule's)."""
    from ras2s.train.run import fit

    fit(_cfg(store, tmp_path / "run", max_steps=4, lr_milestones=(0.25,), lr_factors=(0.5,)))
    branch = _RecordLearningRates()
    flat = dict(lr_milestones=(), lr_factors=(), lr_cooldown_steps=2)
    fit(_cfg(store, tmp_path / "run", max_steps=6, **flat), resume=True, callbacks=(branch,))
    assert branch.by_step == pytest.approx({4: 1e-3, 5: 5e-4}, rel=1e-9)


class _SaveRankWeights(L.Callback):
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()}
        torch.save(state, Path(self.folder) / f"rank{trainer.global_rank}.pt")


def test_ddp_two_cpu_processes_end_with_identical_weights(store, tmp_path):
    from ras2s.train.run import fit

    cfg = _cfg(
        store,
        tmp_path / "ddp",
        max_steps=2,
        devices=2,
        accelerator="cpu",
        strategy="ddp_fork",
        steps_per_epoch=None,
        val_max_patches=1,
    )
    trainer, _ = fit(cfg, callbacks=(_SaveRankWeights(str(tmp_path)),))
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert trainer.world_size == 2
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    init = torch.load(tmp_path / "ddp/checkpoints/last.ckpt", weights_only=True)
    assert init["global_step"] == 2


def test_chosen_band_window_card_names_the_trained_lengths():
    from ras2s.train.export import chosen_window_card

    whole = chosen_window_card(None, "31-64")
    assert whole["band_window"] is None
    assert "trained on 31-64-band sequences; whole cubes" in whole["why"]
    assert "--band-window none" in whole["why"]
    windows = chosen_window_card(48, 64)
    assert (
        windows["band_window"] == 48 and "trained on 64-band sequences; 48-band" in windows["why"]
    )
    assert chosen_window_card(None, None)["why"].startswith("whole cubes")


def test_a_run_ending_within_an_epoch_saves_its_last_step(store, tmp_path):
    from ras2s.train.run import fit

    out = tmp_path / "run"
    fit(_cfg(store, out, max_steps=3))  # epochs of 2 steps: stops one step into epoch 2
    last = out / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    fit(_cfg(store, out, max_steps=5), resume=True)
    assert torch.load(last, weights_only=True)["global_step"] == 5


class _LastCheckpointSteps(L.Callback):
    """Record the step held by last.ckpt on disk at the start of every epoch."""

    def __init__(self, path: Path) -> None:
        self.path, self.steps = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        if self.path.is_file():
            self.steps.append(torch.load(self.path, weights_only=True)["global_step"])


def test_last_checkpoint_follows_every_epoch_even_without_improvement(store, tmp_path):
    from ras2s.train.run import fit

    out = tmp_path / "run"
    seen = _LastCheckpointSteps(out / "checkpoints" / "last.ckpt")
    # lr 0: the weights never change, so validation never improves after the first epoch
    fit(_cfg(store, out, max_steps=6, lr=0.0), callbacks=(seen,))
    assert seen.steps == [2, 4]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
