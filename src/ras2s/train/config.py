"""The training configuration: a frozen dataclass, YAML in and out, ``key=value`` overrides.

Defaults are the authors' recipe (``options/s2s_hsid.yml`` and ``basic/run.py`` of
MIV-XJTU/RAS2S): L1 loss, Adam lr 1e-3 with betas (0.9, 0.99) and no weight decay,
batch 8, 90 epochs, gradient-norm clip 1e6, seed 2018, and their step schedule: the
learning rate is ``1e-3 x`` 1 for epochs 1-5, 0.5 for 6-15, 0.2 for 16-25, 0.1 for
26-50 and 0.05 for 51-90 (their ``milestones [0, 5, 15, 25, 50, 90]`` and ``gammas
[1, 0.5, 0.2, 0.1, 0.05, 0.01]``; the 0.01 stage never starts). Here the milestones are
fractions of the whole run (5/90, 15/90, 25/90, 50/90), applied per optimiser step, so
a run of any length (``max_steps``) follows the same shape; for 90 epochs they fall
exactly on the authors' epoch boundaries.

Noise (``noise_stages``): a tuple of ``(start, kind)``, ``start`` a fraction of the run.
The released config trains with ``complex`` from the start (``multiDatasets.type:
False``, ``noiseType: complex``): each sample gets non-i.i.d. Gaussian noise and then,
in turn, nothing, impulse, stripe or dead lines (here drawn uniformly per sample). Their
optional curriculum (``gaussian`` -> ``blind`` -> ``complex``) is switched off in the
released config. ``kind`` is ``complex`` or any :func:`ras2s.add_noise` case
(``noniid``, ``blind``, ``iid50``, ``mixture``, ...), or several joined by ``+``
(``complex+blind``: each sample draws one of them uniformly).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (see the module docstring for defaults)."""

    # data
    data: str = ""
    batch_size: int = 8
    num_workers: int = 0
    augment: bool = True
    spectral_flip: bool = False
    # (lo, hi): every training batch is cut to k consecutive bands, k drawn per step
    # uniformly from lo..hi (capped at the store's band count), the window per sample
    band_crop: tuple[int, int] | None = None
    # intensity augmentation (issue: the default path): with probability intensity_prob a
    # sample's clean patch x in [0, 1] becomes offset + scale * x before noise is added,
    # scale log-uniform in intensity_scale, offset uniform in intensity_offset, so the
    # network learns cubes whose normalisation missed the clean range (signal beyond
    # [0, 1], or squeezed into part of it); the target is the mapped clean patch
    intensity_scale: tuple[float, float] | None = None
    intensity_offset: tuple[float, float] = (0.0, 0.0)
    intensity_prob: float = 1.0
    # divide each sample's loss by its intensity scale (by its square for l2), so that a
    # brightened sample weighs in the loss as much as one left in [0, 1] (the L1 error
    # of a sample grows with its scale); docs/training-log.md entry 20
    intensity_loss_per_scale: bool = False
    # further patch stores mixed into training, as (store folder, probability) pairs:
    # each training batch comes from that store's training patches with that
    # probability (drawn per batch), else from `data`; the stores may have other band
    # counts and patch sizes (a batch is never mixed); validation stays `data`'s
    mix_stores: tuple[tuple[str, float], ...] = ()
    # architecture (RAS2SConfig)
    channels: int = 14
    regions: int = 3
    reach: int = 1
    # optimisation
    loss: str = "l1"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float | None = 1e6
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights
    lr_milestones: tuple[float, ...] = (5 / 90, 15 / 90, 25 / 90, 50 / 90)
    lr_factors: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05)
    # > 0: over the run's last N steps the lr falls linearly to lr_cooldown_to of its value
    lr_cooldown_steps: int = 0
    lr_cooldown_to: float = 0.0
    # length
    max_epochs: int = 90
    max_steps: int = -1
    steps_per_epoch: int | None = None
    max_time: str | None = None
    # noise
    noise_stages: tuple[tuple[float, str], ...] = ((0.0, "complex"),)
    val_noise: str = "mixture"
    val_seed: int = 0
    val_max_patches: int = 64
    # run
    seed: int = 2018
    out: str = "runs/ras2s"
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    strategy: str = "auto"
    precision: str = "32"
    init: str | None = None  # start from these weights (default, official or a path)
    threads: int | None = None
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "l2"):
            raise InputError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if len(self.lr_milestones) != len(self.lr_factors):
            raise InputError("lr_milestones and lr_factors must have the same length")
        if not self.noise_stages or self.noise_stages[0][0] != 0:
            raise InputError("noise_stages must start with a stage at 0.0")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.band_crop is not None and not 1 <= self.band_crop[0] <= self.band_crop[1]:
            raise InputError(f"band_crop must be (lo, hi) with 1 <= lo <= hi, got {self.band_crop}")
        if (
            self.intensity_scale is not None
            and not 0 < self.intensity_scale[0] <= (self.intensity_scale[1])
        ):
            raise InputError(
                f"intensity_scale must be (lo, hi) with 0 < lo <= hi, got {self.intensity_scale}"
            )
        if self.intensity_offset[0] > self.intensity_offset[1]:
            raise InputError(f"intensity_offset must be (lo, hi), got {self.intensity_offset}")
        if not 0.0 <= self.intensity_prob <= 1.0:
            raise InputError(f"intensity_prob must be in [0, 1], got {self.intensity_prob}")
        if any(not 0.0 <= p <= 1.0 for _, p in self.mix_stores) or (
            sum(p for _, p in self.mix_stores) > 1.0
        ):
            raise InputError(
                f"mix_stores probabilities must lie in [0, 1] and sum to <= 1, got "
                f"{[p for _, p in self.mix_stores]}"
            )
        if self.lr_cooldown_steps < 0:
            raise InputError(f"lr_cooldown_steps must be >= 0, got {self.lr_cooldown_steps}")
        if not 0.0 <= self.lr_cooldown_to <= 1.0:
            raise InputError(f"lr_cooldown_to must be in [0, 1], got {self.lr_cooldown_to}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        from ..noise import resolve_case

        for _, kind in self.noise_stages:
            for part in kind.split("+"):
                if part != "complex":
                    resolve_case(part)
        resolve_case(self.val_noise)

    def arch(self) -> dict[str, int]:
        """The architecture part, as :class:`ras2s.model.RAS2SConfig` keyword arguments."""
        return {"channels": self.channels, "regions": self.regions, "reach": self.reach}

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists), for YAML and checkpoints."""
        return _plain(asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _coerce(name: str, hint, value):
    """Convert a YAML value to the field's type (lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return _coerce(name, next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"config {name}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, args[0], v) for v in value)
        if len(args) != len(value):
            raise InputError(f"config {name}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(name, a, v) for a, v in zip(args, value, strict=True))
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "5e-4" as a string
        try:
            return float(value)
        except ValueError:
            raise InputError(f"config {name}: expected a number, got {value!r}") from None
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int | float):
        return str(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise InputError(f"config {name}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise InputError(f"config {name}: expected int, got {value!r}")
    return value


def from_dict(values: dict, base: TrainConfig | None = None) -> TrainConfig:
    """A config from a (partial) dict; unknown keys are an error naming them."""
    hints = typing.get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
    coerced = {k: _coerce(k, hints[k], v) for k, v in values.items()}
    return dataclasses.replace(base or TrainConfig(), **coerced)


def load_config(path: str | Path | None, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML config (a mapping of :class:`TrainConfig` fields) over ``base``."""
    import yaml

    if path is None:
        return base or TrainConfig()
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the config ({err})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: a config must be a mapping of keys to values")
    return from_dict(values, base)


def apply_overrides(config: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """Apply ``key=value`` strings (values parsed as YAML: ``lr=5e-4``, ``betas=[0.9,0.9]``)."""
    import yaml

    values = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got {item!r}")
        values[key.strip()] = yaml.safe_load(text)
    return from_dict(values, config)


def dump_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    import yaml

    from ..io import write_text_atomically

    return write_text_atomically(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))
