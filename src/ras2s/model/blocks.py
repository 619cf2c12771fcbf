"""Small building blocks shared by the encoder and the decoder.

- :class:`BandEmbedding` lifts one band (1 channel) to ``channels`` features (the
  paper's shallow ``Conv2D(y_i)``; the decoder uses a twin to re-embed its own output).
- :class:`HighFrequencyCompensation` is ``HFComp`` of Algorithm 1: a channel
  (transposed) attention from the current input features to the recurrent state,
  followed by two residual blocks, added back to the state.

All tensors are ``(N, channels, H, W)`` float tensors unless stated otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BandEmbedding(nn.Module):
    """Two 3x3 convolutions with leaky ReLU, plus the band itself (broadcast over channels).

    Shape:
        input ``(N, 1, H, W)``, output ``(N, channels, H, W)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, band: torch.Tensor) -> torch.Tensor:
        features = F.leaky_relu(self.conv1(band), 0.1)
        features = F.leaky_relu(self.conv2(features), 0.1)
        return features + band


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with 3x3 convolutions and no normalisation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class HighFrequencyCompensation(nn.Module):
    """HFComp: compensate the recurrent state with the current band's features.

    Queries come from the input features, keys and values from the state. The attention
    is between channels (``channels/heads`` x ``channels/heads`` per head), with queries
    and keys L2-normalised over all pixels, so it uses statistics of the whole image
    (or tile) it sees.

    Shape:
        ``features``, ``state``: ``(N, channels, H, W)``; output: same.
    """

    def __init__(self, channels: int, heads: int = 2) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.query = nn.Conv2d(channels, channels, 1)
        self.key = nn.Conv2d(channels, channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.refine = nn.Sequential(ResidualBlock(channels), ResidualBlock(channels))

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        n, c, h, w = state.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, self.heads, c // self.heads, h * w)

        query = F.normalize(split_heads(self.query(features)), dim=-1)
        key = F.normalize(split_heads(self.key(state)), dim=-1)
        value = split_heads(self.value(state))
        attention = (query @ key.transpose(-2, -1)).softmax(dim=-1)
        attended = (attention @ value).reshape(n, c, h, w)
        return self.refine(attended) + state
