"""RAS2S: region-aware sequence-to-sequence hyperspectral denoising (ECCV 2024).

The network reads a cube as a sequence of bands, ``(N, bands, H, W)``, and returns the
denoised cube of the same shape: ``Decoder(noisy, Encoder(noisy))``. It expects values
normalised to about ``[0, 1]`` (see :func:`ras2s.denoise`, which does that); it does no
normalisation itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .decoder import Decoder
from .encoder import Encoder


@dataclass(frozen=True)
class RAS2SConfig:
    """Architecture hyperparameters.

    Attributes
    ----------
    channels:
        Hidden channels ``C`` of every state (paper Table 3: 8..20; released model 14).
        Must be even (HFComp uses two heads).
    regions:
        Number of semantic regions of the region-learning stage (released model 3).
    reach:
        Attention range: the decoder attends to ``2 * reach + 1`` adjacent bands
        (released model 1).
    """

    channels: int = 14
    regions: int = 3
    reach: int = 1

    def __post_init__(self) -> None:
        if self.channels < 2 or self.channels % 2:
            raise ValueError(f"channels must be an even number >= 2, got {self.channels}")
        if self.regions < 1:
            raise ValueError(f"regions must be >= 1, got {self.regions}")
        if self.reach < 0:
            raise ValueError(f"reach must be >= 0, got {self.reach}")

    def to_dict(self) -> dict[str, int]:
        """The config as a plain dict (for checkpoints and model cards)."""
        return asdict(self)


class RAS2S(nn.Module):
    """The RAS2S network.

    Parameters
    ----------
    config:
        Architecture hyperparameters; the default is the released model (84,105 parameters).

    Shape:
        input ``(N, bands, H, W)`` float32 or float64, any ``N >= 1``, ``bands >= 1``,
        ``H, W >= 1``; output: same shape and dtype. Computation runs in the parameters'
        dtype and memory format (see :func:`ras2s.precision.apply_precision`: bfloat16
        and channels-last make it faster on CPUs with native bfloat16). Cubes with fewer
        than ``2 * reach + 1`` bands (which the authors' code rejects) are extended by
        repeating their last band, and the extra bands are dropped from the output.
    """

    def __init__(self, config: RAS2SConfig | None = None) -> None:
        super().__init__()
        self.config = config or RAS2SConfig()
        self.encoder = Encoder(self.config.channels, self.config.regions)
        self.decoder = Decoder(self.config.channels, self.config.reach)

    def compute_dtype(self, device_type: str = "cpu") -> torch.dtype:
        """The dtype activations are computed in: autocast's when on, else the parameters'.

        Under autocast (mixed-precision training) every activation then stays in
        bfloat16, instead of float32 ones being cast again at each convolution.
        """
        return _autocast_dtype(device_type) or self.decoder.head.conv3.weight.dtype

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        if noisy.ndim != 4:
            raise InputError(
                f"RAS2S expects a (N, bands, H, W) tensor, got shape {tuple(noisy.shape)}"
            )
        if min(noisy.shape) < 1:
            raise InputError(f"RAS2S got an empty tensor of shape {tuple(noisy.shape)}")
        bands = noisy.shape[1]
        compute = self.compute_dtype(noisy.device.type)
        # The output is a residual on the noisy input: keep that sum in at least float32
        # (bfloat16 would round every output value to 8 bits of mantissa).
        base = noisy.to(torch.promote_types(compute, torch.float32)).contiguous()
        min_bands = 2 * self.config.reach + 1
        if bands < min_bands:
            base = F.pad(base.unsqueeze(0), (0, 0, 0, 0, 0, min_bands - bands), mode="replicate")
            base = base.squeeze(0)
        x = base.to(compute)
        out = self.decoder(base, self.encoder(x))
        return out[:, :bands].to(noisy.dtype)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for ``device_type``, or None."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else False
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.float16


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
