"""Encoder stage of RAS2S (Algorithm 1, lines 1-12, then region learning, lines 13-23).

Every band ``y_i`` is embedded to ``C`` features. A first ConvGRU pass runs over the
bands in descending order (last band first), its state compensated by HFComp before
every step; a second pass runs in ascending order, starting from the first pass's final
state and fusing at each band with the first pass's state at that band. Each resulting
state is refined by region learning.

The authors' code calls the descending pass "forward" and the ascending one "backward";
we name them by direction.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BandEmbedding, HighFrequencyCompensation
from .convgru import ConvGRUCell, FusedConvGRUCell
from .regions import RegionLearning


class Encoder(nn.Module):
    """Encode a noisy cube into one ``(N, C, H, W)`` state per band.

    Shape:
        input ``(N, bands, H, W)``; output: a list of ``bands`` states ``(N, C, H, W)``
        (the decoder consumes the list, dropping entries it no longer needs).
    """

    def __init__(self, channels: int, regions: int, chunk: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.chunk = max(1, chunk)
        self.embed = BandEmbedding(channels)
        self.compensate = HighFrequencyCompensation(channels)
        self.descending = ConvGRUCell(channels)
        self.ascending = FusedConvGRUCell(channels)
        self.regions = RegionLearning(channels, regions)

    def embed_bands(self, cube: torch.Tensor) -> list[torch.Tensor | None]:
        """Embed every band, ``chunk`` bands per convolution call.

        ``(N, bands, H, W)`` -> a list of ``bands`` tensors ``(N, C, H, W)``.
        """
        n, bands, h, w = cube.shape
        features: list[torch.Tensor | None] = []
        for start in range(0, bands, self.chunk):
            stop = min(bands, start + self.chunk)
            flat = cube[:, start:stop].transpose(0, 1).reshape((stop - start) * n, 1, h, w)
            features.extend(self.embed(flat).split(n))
        return features

    def forward(self, cube: torch.Tensor) -> list[torch.Tensor | None]:
        n, bands, h, w = cube.shape
        features = self.embed_bands(cube)

        descending: list[torch.Tensor | None] = [None] * bands
        state = cube.new_zeros(n, self.channels, h, w)
        for i in range(bands - 1, -1, -1):
            state = self.compensate(features[i], state)
            state = self.descending(state, features[i])
            descending[i] = state

        # Entries are dropped as soon as they are used, so that peak memory holds about
        # two states per band instead of three.
        encoded: list[torch.Tensor | None] = []
        state = descending[0]
        for i in range(bands):
            state = self.ascending(state, features[i], descending[i])
            features[i] = descending[i] = None
            encoded.append(state)

        # Region learning is independent per band: run it on chunks of bands at once.
        for start in range(0, bands, self.chunk):
            chunk = self.regions(torch.cat(encoded[start : start + self.chunk]))
            encoded[start : start + self.chunk] = list(chunk.split(n))
        return encoded
