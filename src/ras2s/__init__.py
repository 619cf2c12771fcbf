"""ras2s: RAS2S hyperspectral denoising as software."""

__version__ = "0.1.0"
