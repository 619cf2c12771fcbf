"""Lightning checkpoint -> inference checkpoint (our layout) + JSON model card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import InputError, WeightsError
from ..io import FolderLock, sha256_file, write_text_atomically
from ..model import RAS2S, RAS2SConfig
from ..weights import save_weights


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by ``ras2s train`` (tensors and plain values only)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise WeightsError(f"{path}: not a readable training checkpoint ({err})") from None
    if "state_dict" not in ckpt or "config" not in ckpt.get("hyper_parameters", {}):
        raise WeightsError(f"{path}: not a `ras2s train` checkpoint (no state_dict/config)")
    return ckpt


def build_card(
    ckpt: dict, data_dir: str | os.PathLike | None = None, extra: dict | None = None
) -> dict:
    """The model card of a training checkpoint (architecture, data, noise, length, scores)."""
    cfg = ckpt["hyper_parameters"]["config"]
    extra_state = ckpt.get("ras2s", {})
    history = extra_state.get("history", [])
    card = {
        "architecture": {
            "channels": cfg["channels"],
            "regions": cfg["regions"],
            "reach": cfg["reach"],
        },
        "training": {
            "steps": ckpt.get("global_step"),
            "epochs": ckpt.get("epoch", -1) + 1,
            "wall_time_s": round(float(extra_state.get("wall_time_s", 0.0)), 1),
            "batch_size": cfg["batch_size"],
            "loss": cfg["loss"],
            "lr": cfg["lr"],
            "betas": cfg["betas"],
            "lr_milestones_fraction": cfg["lr_milestones"],
            "lr_factors": cfg["lr_factors"],
            "seed": cfg["seed"],
            "precision": cfg["precision"],
            "augment": cfg["augment"],
            "spectral_flip": cfg["spectral_flip"],
        },
        "noise": {
            "stages": cfg["noise_stages"],
            "complex": "non-iid Gaussian, then uniformly one of: nothing, impulse, stripe, "
            "deadline (per sample)",
            "validation": {
                "case": cfg["val_noise"],
                "seed": cfg["val_seed"],
                "patches": cfg["val_max_patches"],
            },
        },
        "validation": {
            "last": history[-1] if history else None,
            "best": max(history, key=lambda r: r.get("mpsnr", -1e9)) if history else None,
            "history": history,
            "mssim_convention": "paper",
            "sam_unit": "radians",
        },
        "config": cfg,
    }
    data_dir = data_dir or cfg.get("data")
    manifest_path = Path(data_dir) / "manifest.json" if data_dir else None
    if manifest_path and manifest_path.is_file():
        m = json.loads(manifest_path.read_text())
        card["data"] = {
            "source_dir": m["source_dir"],
            "train_files": _files(m, "train"),
            "held_out_files": _files(m, "val"),
            "patch": m["patch"],
            "bands": m["bands"],
            "band_rule": m["band_rule"],
            "crop": m["crop"],
            "scales": m["scales"],
            "strides": m["strides"],
            "counts": m["counts"],
            "normalisation": m["normalisation"],
            "prepare_command": m.get("command"),
        }
        card["inference"] = sequence_card(int(m["bands"]))
        mixed = [_mixed_in(store, p) for store, p in cfg.get("mix_stores") or []]
        if mixed:
            card["data"]["mixed_in"] = mixed
    if extra:
        card.update(extra)
    return card


def _files(manifest: dict, split: str) -> list[dict]:
    """The source files of one split of a patch store's manifest (name, shape, sha256)."""
    return [
        {"file": s["file"], "shape": s["shape"], "sha256": s["sha256"]}
        for s in manifest["sources"]
        if s["split"] == split
    ]


def _mixed_in(store: str, probability: float) -> dict:
    """A mixed-in patch store in the card: its probability and, where readable, its data."""
    entry: dict = {"store": store, "probability": probability}
    manifest = Path(store) / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        entry.update(
            train_files=_files(m, "train"),
            patch=m["patch"],
            bands=m["bands"],
            counts=m["counts"],
            prepare_command=m.get("command"),
        )
    return entry


def sequence_card(bands: int) -> dict:
    """The card's ``inference`` section: run long cubes in windows of the trained length.

    ``bands`` is the patch store's band count (its manifest's ``bands``). The network was
    trained only on sequences that long; on much longer cubes an under-trained recurrence
    can drift (seen: run 2 at step 1700 on the 189-band San Diego cube), so
    :func:`ras2s.denoise` runs such weights on overlapping windows of that many bands
    (``band_window="auto"``).
    """
    return {
        "band_window": bands,
        "why": f"trained on {bands}-band sequences only; longer cubes are denoised in "
        f"overlapping {bands}-band windows (ras2s.denoise band_window='auto')",
    }


def chosen_window_card(band_window: int | None, trained_bands: int | str | None) -> dict:
    """The card's ``inference`` band window chosen at export (``None``: whole cubes).

    ``trained_bands``: the trained sequence length (``64``, or ``"31-64"`` for a run
    with ``band_crop``), named in the card's ``why``; None when unknown.
    """
    trained = f"trained on {trained_bands}-band sequences; " if trained_bands else ""
    runs = "whole cubes at once" if band_window is None else f"{band_window}-band windows"
    flag = "none" if band_window is None else band_window
    return {
        "band_window": band_window,
        "why": f"{trained}{runs}, chosen at export (ras2s export --band-window {flag}) "
        "by measuring band windows against whole cubes on long cubes",
    }


def export(
    ckpt_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    extra: dict | None = None,
    which: str | None = None,
    normalise: str | None = None,
    band_window: int | str | None = "auto",
    force: bool = True,
) -> tuple[Path, Path]:
    """Write ``out`` (load with :func:`ras2s.load_model`) and ``out`` with ``.json``.

    ``which``: ``"average"`` (the weight average, an error when the run kept none),
    ``"last"`` (the weights at the last step) or None (the average when there is one).
    ``normalise``: ``"clean"``, ``"minmax"`` or ``"percentile"``, recorded as the card's
    ``inference.normalise``, what :func:`ras2s.denoise` applies with ``normalise="auto"``
    (None records nothing: ``clean``).
    ``band_window``: the card's ``inference.band_window``, what :func:`ras2s.denoise`
    applies with ``band_window="auto"``: ``"auto"`` the patch store's band count (the
    sequence length the network was trained on; nothing when the store is not found),
    ``None`` whole cubes at once (for weights measured stable on long cubes), or a band
    count.
    ``force``: replace existing files; without it, weights or a card that another
    process wrote meanwhile are left alone (:class:`~ras2s.errors.OutputError`). The
    weights and their card are written as a pair (a second export to the same name waits),
    each atomically and flushed to the disk.
    """
    if which not in (None, "average", "last"):
        raise InputError(f"which must be 'average' or 'last', got {which!r}")
    if normalise not in (None, "clean", "minmax", "percentile"):
        raise InputError(f"normalise must be 'clean', 'minmax' or 'percentile', got {normalise!r}")
    ckpt = read_training_checkpoint(ckpt_path)
    cfg = ckpt["hyper_parameters"]["config"]
    model = RAS2S(RAS2SConfig(channels=cfg["channels"], regions=cfg["regions"], reach=cfg["reach"]))
    has_average = any(k.startswith("ema.") for k in ckpt["state_dict"])
    if which == "average" and not has_average:
        raise InputError(f"{ckpt_path}: the run kept no weight average (ema_decay 0)")
    prefix = "ema." if has_average and which != "last" else "model."
    state = {
        k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)
    }
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(
            f"{ckpt_path}: weights do not match the configured network ({err})"
        ) from None
    if (
        band_window != "auto"
        and band_window is not None
        and (isinstance(band_window, bool) or not isinstance(band_window, int) or band_window < 3)
    ):
        raise InputError(f"band_window must be 'auto', None or at least 3, got {band_window!r}")
    card = build_card(ckpt, data_dir, extra)
    if band_window != "auto":
        trained = (card.get("data") or {}).get("bands")
        if trained and cfg.get("band_crop"):  # trained on crops of lo..hi bands
            trained = f"{cfg['band_crop'][0]}-{min(cfg['band_crop'][1], trained)}"
        card["inference"] = (card.get("inference") or {}) | chosen_window_card(band_window, trained)
    if normalise is not None:
        card.setdefault("inference", {})["normalise"] = normalise
    card["training"]["exported"] = (
        f"exponential moving average of the weights (decay {cfg.get('ema_decay')}, "
        f"{ckpt.get('ras2s', {}).get('ema_updates')} updates)"
        if prefix == "ema."
        else "the weights at the last step"
    )
    run_dir = Path(ckpt_path).parent.parent
    noisy = run_dir / "val_noisy.json"
    if noisy.is_file():
        card["validation"]["noisy_input"] = json.loads(noisy.read_text())
    commands = run_dir / "commands.jsonl"
    if commands.is_file():
        card["training"]["commands"] = [
            json.loads(line) for line in commands.read_text().splitlines() if line.strip()
        ]
    card["source_checkpoint"] = {
        "file": str(Path(ckpt_path).name),
        "sha256": sha256_file(ckpt_path),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    card_path = out.with_suffix(".json")
    with FolderLock(out.parent):
        save_weights(model, out, card, force=force)
        write_text_atomically(card_path, json.dumps(card, indent=1) + "\n", force=force)
    return out, card_path
