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

    The computation works on pixel-major views ``(N, H*W, C)`` (free for channels-last
    tensors) and never materialises the values: the per-head attention matrices are
    assembled into one block-diagonal ``(C, C)`` matrix ``A`` and folded into the value
    projection, ``A (W_v s + b_v) = (A W_v) s + A b_v``. The small ``(C, C)`` score
    matrices are formed and normalised in float32 whatever the compute dtype.

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

    def query_part(self, features: torch.Tensor) -> torch.Tensor:
        """The queries ``(M, C, H, W)`` of some features (batched by the encoder)."""
        return self.query(features)

    def step(self, query: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Compensate ``state`` given precomputed :meth:`query_part` of the features."""
        n, c, h, w = state.shape
        pixels = _pixel_major(state)  # (N, HW, C)
        key = F.linear(pixels, self.key.weight.reshape(c, c), self.key.bias).float()
        query = _pixel_major(query).float()
        scores = query.transpose(1, 2) @ key  # (N, C, C): sum over pixels of q_i k_j
        scores = scores / query.norm(dim=1).clamp_min(1e-12).unsqueeze(2)
        scores = scores / key.norm(dim=1).clamp_min(1e-12).unsqueeze(1)
        attention = scores.masked_fill(~_head_blocks(c, self.heads, scores.device), -torch.inf)
        attention = attention.softmax(dim=-1)  # block-diagonal: zero across heads
        value_weight = self.value.weight.reshape(c, c).float()
        mixing = (attention @ value_weight).to(state.dtype)  # (N, C, C)
        bias = (attention @ self.value.bias.float()).to(state.dtype)  # (N, C)
        attended = torch.baddbmm(bias.unsqueeze(1), pixels, mixing.transpose(1, 2))
        attended = attended.view(n, h, w, c).permute(0, 3, 1, 2)
        return self.refine(attended) + state

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.step(self.query_part(features), state)


def _pixel_major(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W) -> (N, H*W, C)``; a view when ``x`` is channels-last."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _head_blocks(channels: int, heads: int, device: torch.device) -> torch.Tensor:
    """``(C, C)`` boolean mask of the per-head diagonal blocks."""
    head = torch.arange(channels, device=device) // (channels // heads)
    return head.unsqueeze(0) == head.unsqueeze(1)
