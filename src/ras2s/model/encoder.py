"""Encoder stage of RAS2S (Algorithm 1, lines 1-12, then region learning, lines 13-23).

Every band ``y_i`` is embedded to ``C`` features. A first ConvGRU pass runs over the
bands in descending order (last band first), its state compensated by HFComp before
every step; a second pass runs in ascending order, starting from the first pass's final
state and fusing at each band with the first pass's state at that band. Each resulting
state is refined by region learning.

The authors' code calls the descending pass "forward" and the ascending one "backward";
we name them by direction.

Everything that does not depend on the recurrence (the band embeddings, the HFComp
queries, the input halves of both GRUs, the fusion with the descending states, region
learning) is computed for ``chunk`` bands in one batched call, one chunk at a time, so
that the sequential loops only run the recurrent halves.
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

    def chunks(self, bands: int) -> list[range]:
        """Consecutive band ranges of at most ``chunk`` bands."""
        return [range(s, min(bands, s + self.chunk)) for s in range(0, bands, self.chunk)]

    def embed_bands(self, cube: torch.Tensor, bands: range) -> torch.Tensor:
        """Embed ``bands`` of ``cube`` in one call: ``(N, all, H, W) -> (len * N, C, H, W)``."""
        n, _, h, w = cube.shape
        flat = cube[:, bands.start : bands.stop].transpose(0, 1).reshape(len(bands) * n, 1, h, w)
        return self.embed(flat)

    def forward(self, cube: torch.Tensor) -> list[torch.Tensor | None]:
        n, bands, h, w = cube.shape
        chunks = self.chunks(bands)
        features = [self.embed_bands(cube, c) for c in chunks]

        descending: list[torch.Tensor | None] = [None] * bands
        state = torch.zeros_like(features[-1][:n])  # keeps the features' memory format
        for c in reversed(range(len(chunks))):
            queries = self.compensate.query_part(features[c]).split(n)
            inputs = _split_parts(self.descending.input_part(features[c]), n)
            for j in reversed(range(len(chunks[c]))):
                state = self.compensate.step(queries[j], state)
                state = self.descending.step(state, inputs[j])
                descending[chunks[c][j]] = state

        # Entries are dropped as soon as they are used, so that peak memory holds about
        # two states per band instead of three.
        encoded: list[torch.Tensor | None] = []
        state = descending[0]
        for c, band_range in enumerate(chunks):
            inputs = _split_parts(self.ascending.input_part(features[c]), n)
            features[c] = None  # type: ignore[call-overload]
            opposite = torch.cat([descending[i] for i in band_range])
            opposite_parts = self.ascending.opposite_part(opposite).split(n)
            for i in band_range:
                descending[i] = None
            del opposite
            states = []
            for j in range(len(band_range)):
                state = self.ascending.fused_step(state, inputs[j], opposite_parts[j])
                states.append(state)
            # Region learning is independent per band: one call per chunk.
            encoded.extend(self.regions(torch.cat(states)).split(n))
        return encoded


def _split_parts(parts: tuple[torch.Tensor, ...], n: int) -> list[tuple[torch.Tensor, ...]]:
    """Per-band tuples from batched parts: each ``(bands * n, ...)`` split in ``n`` rows."""
    return list(zip(*(part.split(n) for part in parts), strict=True))
