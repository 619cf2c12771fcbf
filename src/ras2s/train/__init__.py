"""Training of RAS2S (the ``[train]`` extra: Lightning, PyYAML).

Only :mod:`ras2s.train.config`, :mod:`ras2s.train.noise_schedule` and
:mod:`ras2s.train.export` import without Lightning; :mod:`ras2s.train.system`
(LightningModule, DataModule, callbacks) and :mod:`ras2s.train.run` need it.
"""

from .config import TrainConfig, apply_overrides, dump_config, load_config

__all__ = ["TrainConfig", "apply_overrides", "dump_config", "load_config"]
