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
from .convgru import ConvGRUCell, FusedConvGRUCell, conv3x3


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

    The 3-D convolution runs its depth axis (the ``C`` state channels) as channels of a
    2-D convolution: its kernel is expanded to a banded ``(K*C, (K+1)*C, 3, 3)`` kernel
    (output ``k*C + d`` reads input slot ``j`` at depths ``d-1, d, d+1``). That costs more
    multiply-adds than the 3-D form but is one dense convolution in the states' own
    memory format, with no transposes (PyTorch runs narrow 3-D convolutions on CPU with a
    slow reference kernel).

    Shape:
        ``query``: ``(N, C, H, W)``; ``states``: ``K`` tensors ``(N, C, H, W)``;
        output ``(N, C, H, W)``.
    """

    def __init__(self, reach: int) -> None:
        super().__init__()
        window = 2 * reach + 1
        self.score = nn.Conv3d(window + 1, window, 3, padding=1)

    def banded_kernel(self, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3-D kernel as a 2-D one over stacked channels, and its bias ``(K*C,)``."""
        weight = self.score.weight  # (K, K+1, 3 depth, 3, 3)
        k_out, k_in = weight.shape[:2]
        eye = torch.eye(channels + 2, dtype=weight.dtype, device=weight.device)
        # shift[z, d, e] = 1 where input depth e = d + z - 1 (zero padding at the ends)
        shift = torch.stack([eye[1:-1, 2 - z : 2 - z + channels] for z in range(3)])
        banded = torch.einsum("kjzyx,zde->kdjeyx", weight, shift)
        banded = banded.reshape(k_out * channels, k_in * channels, 3, 3)
        return banded, self.score.bias.repeat_interleave(channels)

    def forward(self, query: torch.Tensor, states: list[torch.Tensor]) -> torch.Tensor:
        c = query.shape[1]
        weight, bias = self.banded_kernel(c)
        stacked = torch.cat([query, *states], dim=1)
        # softmax_k(tanh(s_k)) = softmax_k(2 sigmoid(2 s_k)): the -1 of tanh via sigmoid
        # cancels, and tanh bounds the scores, so no maximum needs subtracting. One
        # convolution per slot keeps every score map a contiguous tensor.
        total = weighted = None
        for k, state in enumerate(states):
            rows = slice(k * c, (k + 1) * c)
            score = conv3x3(stacked, 2 * weight[rows], 2 * bias[rows])
            score = torch.exp(torch.sigmoid(score).mul(2))
            total = score if total is None else total + score
            weighted = score * state if weighted is None else weighted + score * state
        return weighted / total


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
        ``noisy``: ``(N, bands, H, W)``, float32 or wider (the residual base, also when
        the states are bfloat16); ``encoded``: ``bands`` states ``(N, C, H, W)``
        (consumed: entries are set to ``None`` once no longer needed);
        output ``(N, bands, H, W)``.
    """

    def __init__(self, channels: int, reach: int, chunk: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.reach = reach
        self.chunk = max(1, chunk)
        self.attend = AdjacentAttention(reach)
        self.compensate = HighFrequencyCompensation(channels)
        self.descending = ConvGRUCell(channels)
        self.ascending = FusedConvGRUCell(channels)
        self.merge_feedback = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.embed_output = BandEmbedding(channels)
        self.head = OutputHead(channels)

    def forward(self, noisy: torch.Tensor, encoded: list[torch.Tensor | None]) -> torch.Tensor:
        n, bands = noisy.shape[:2]
        contexts: list[torch.Tensor | None] = [None] * bands
        descending: list[torch.Tensor | None] = [None] * bands
        state = encoded[bands - 1]
        for i in range(bands - 1, -1, -1):
            window = attention_window(i, bands, self.reach)
            context = self.attend(state, encoded[window])
            state = self.compensate(context, state)
            state = self.descending(state, context)
            contexts[i], descending[i] = context, state
            if i > 0:  # the windows only move down: drop states above the next one
                for j in range(attention_window(i - 1, bands, self.reach).stop, window.stop):
                    encoded[j] = None

        # The halves of the ascending convolutions that read the descending pass's
        # contexts and states are computed for `chunk` bands at a time.
        output: list[torch.Tensor] = []
        feedback = self.merge_feedback_part(contexts[0])
        state = descending[0]
        for start in range(0, bands, self.chunk):
            band_range = range(start, min(bands, start + self.chunk))
            # split, not slicing: one concatenation in the backward pass, not one
            # chunk-sized zero tensor per band
            merge_parts = self.merge_context_part(torch.cat([contexts[i] for i in band_range]))
            merge_parts = merge_parts.split(n)
            opposite = self.ascending.opposite_part(torch.cat([descending[i] for i in band_range]))
            opposite = opposite.split(n)
            for i in band_range:
                contexts[i] = descending[i] = None
            for j, i in enumerate(band_range):
                merged = F.leaky_relu(feedback + merge_parts[j], 0.1)
                inputs = self.ascending.input_part(merged)
                state = self.ascending.fused_step(state, inputs, opposite[j])
                band = self.head(state).to(noisy.dtype) + noisy[:, i : i + 1]
                output.append(band)
                feedback = self.merge_feedback_part(self.embed_output(band.to(state.dtype)))
        return torch.cat(output, dim=1)

    def merge_feedback_part(self, feedback: torch.Tensor) -> torch.Tensor:
        """The feedback half of ``merge_feedback`` (a 3x3 convolution, no bias)."""
        return conv3x3(feedback, self.merge_feedback.weight[:, : self.channels])

    def merge_context_part(self, contexts: torch.Tensor) -> torch.Tensor:
        """The context half of ``merge_feedback``, with its bias."""
        weight = self.merge_feedback.weight[:, self.channels :]
        return conv3x3(contexts, weight, self.merge_feedback.bias)
