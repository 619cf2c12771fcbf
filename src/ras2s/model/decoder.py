"""Decoder stage of RAS2S (Algorithm 1, lines 24-39).

A descending pass (last band first) attends, at band ``i``, over the ``2 * range + 1``
encoded states nearest to ``i`` (the window is shifted, not truncated, at the ends of the
spectrum) with the previous decoder state as the query (AAM), compensates its state with
the context (HFComp) and steps a ConvGRU. An ascending, autoregressive pass then fuses
each band's context with the embedding of the band it just produced, steps a second
ConvGRU fused with the descending state, and predicts the band as a residual on the
noisy input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BandEmbedding, HighFrequencyCompensation
from .convgru import ConvGRUCell, FusedConvGRUCell


def attention_window(band: int, bands: int, reach: int) -> slice:
    """The ``2 * reach + 1`` consecutive band indices the decoder attends to at ``band``.

    Centred on ``band`` and shifted to stay inside ``[0, bands)``; requires
    ``bands >= 2 * reach + 1``.
    """
    start = min(max(band - reach, 0), bands - 1 - 2 * reach)
    return slice(start, start + 2 * reach + 1)


class AdjacentAttention(nn.Module):
    """AAM: softmax-weighted sum of adjacent encoder states.

    The query state and the ``K = 2 * reach + 1`` states are stacked as ``K + 1`` channels
    of a 3-D volume ``(C, H, W)``; a 3x3x3 convolution gives ``K`` score maps, softmax
    over them weights the states.

    The 3-D convolution is computed as one 2-D convolution with the ``C`` depth slices
    folded into the batch and the three depth taps as ``3 K`` output channels, whose
    shifted sums give the 3-D result (PyTorch runs narrow 3-D convolutions on CPU with a
    slow reference kernel; this form is about 3.5x faster and equal to rounding).

    Shape:
        ``query``: ``(N, C, H, W)``; ``states``: ``(N, K, C, H, W)``; output ``(N, C, H, W)``.
    """

    def __init__(self, reach: int) -> None:
        super().__init__()
        window = 2 * reach + 1
        self.score = nn.Conv3d(window + 1, window, 3, padding=1)

    def scores(self, volume: torch.Tensor) -> torch.Tensor:
        """``conv3d(volume)`` for ``volume`` of shape ``(N, K + 1, C, H, W)``."""
        n, k_in, depth, h, w = volume.shape
        k_out = self.score.out_channels
        slices = volume.transpose(1, 2).reshape(n * depth, k_in, h, w)
        taps = self.score.weight.permute(2, 0, 1, 3, 4).reshape(3 * k_out, k_in, 3, 3)
        per_tap = F.conv2d(slices, taps, padding=1).reshape(n, depth, 3, k_out, h, w)
        out = per_tap[:, :, 1] + self.score.bias.view(1, 1, k_out, 1, 1)
        out[:, 1:] += per_tap[:, :-1, 0]  # tap 0 reads the slice below
        out[:, :-1] += per_tap[:, 1:, 2]  # tap 2 reads the slice above
        return out.transpose(1, 2)

    def forward(self, query: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        stacked = torch.cat([query.unsqueeze(1), states], dim=1)
        weights = torch.tanh(self.scores(stacked)).softmax(dim=1)
        return (weights * states).sum(dim=1)


class OutputHead(nn.Module):
    """Three 3x3 convolutions ``C -> C -> C -> 1`` predicting the residual of one band."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(state), 0.1)
        out = F.leaky_relu(self.conv2(out), 0.1)
        return self.conv3(out)


class Decoder(nn.Module):
    """Decode the per-band encoder states into the denoised cube.

    Shape:
        ``noisy``: ``(N, bands, H, W)``; ``encoded``: ``bands`` states ``(N, C, H, W)``
        (consumed: entries are set to ``None`` once no longer needed);
        output ``(N, bands, H, W)``.
    """

    def __init__(self, channels: int, reach: int) -> None:
        super().__init__()
        self.channels = channels
        self.reach = reach
        self.attend = AdjacentAttention(reach)
        self.compensate = HighFrequencyCompensation(channels)
        self.descending = ConvGRUCell(channels)
        self.ascending = FusedConvGRUCell(channels)
        self.merge_feedback = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.embed_output = BandEmbedding(channels)
        self.head = OutputHead(channels)

    def forward(self, noisy: torch.Tensor, encoded: list[torch.Tensor | None]) -> torch.Tensor:
        bands = noisy.shape[1]
        contexts: list[torch.Tensor | None] = [None] * bands
        descending: list[torch.Tensor | None] = [None] * bands
        state = encoded[bands - 1]
        for i in range(bands - 1, -1, -1):
            window = attention_window(i, bands, self.reach)
            context = self.attend(state, torch.stack(encoded[window], dim=1))
            state = self.compensate(context, state)
            state = self.descending(state, context)
            contexts[i], descending[i] = context, state
            if i > 0:  # the windows only move down: drop states above the next one
                for j in range(attention_window(i - 1, bands, self.reach).stop, window.stop):
                    encoded[j] = None

        output: list[torch.Tensor] = []
        feedback = contexts[0]
        state = descending[0]
        for i in range(bands):
            merged = F.leaky_relu(self.merge_feedback(torch.cat([feedback, contexts[i]], 1)), 0.1)
            state = self.ascending(state, merged, descending[i])
            contexts[i] = descending[i] = None
            band = self.head(state) + noisy[:, i : i + 1]
            output.append(band)
            feedback = self.embed_output(band)
        return torch.cat(output, dim=1)
