"""The RAS2S network, nothing else (no I/O, no normalisation)."""

from .ras2s import RAS2S, RAS2SConfig, count_parameters

__all__ = ["RAS2S", "RAS2SConfig", "count_parameters"]
