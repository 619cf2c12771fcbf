r"""The convolutional GRU cell of the paper (supplementary eq. 1-4).

.. math::
    z_t = \sigma(W_z * x_t + U_z * h_{t-1} + b_z), \quad
    r_t = \sigma(W_r * x_t + U_r * h_{t-1} + b_r)

    \tilde h_t = \tanh(W_h * x_t + U_h * (r_t \odot h_{t-1}) + b_h), \quad
    h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

The parameters are stored as the paper writes them: ``W * x + U * h`` is one 3x3
convolution over the concatenation ``[h, x]`` (the update and reset gates share their
input, so they are one convolution with ``2 * channels`` outputs; the authors'
checkpoint stores them as two and the weight converter concatenates them).

The computation splits every such convolution into its state half ``U * h`` and its
input half ``W * x + b`` (:meth:`ConvGRUCell.input_part`). The input half does not depend
on the recurrence, so callers that know their inputs in advance (the encoder) compute it
for many bands in one batched convolution; no concatenated tensor is ever built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GRUInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def tanh_via_sigmoid(doubled: torch.Tensor) -> torch.Tensor:
    """``tanh(a)`` given ``doubled = 2a``, as ``2 sigmoid(2a) - 1``.

    PyTorch's CPU ``tanh`` is several times slower than its ``sigmoid`` (about 700 vs
    100 microseconds for 229k values on one core); the doubling is folded into the
    weights of the convolution that produces ``a``, where it is exact. The sigmoid runs
    in float32 (returned as float32): in bfloat16, ``2 s - 1`` near zero would keep
    only the absolute precision of ``s`` near 0.5 (about 0.004), which costs the bf16
    model about 0.17 dB.
    """
    return torch.sigmoid(doubled.float()).mul(2).sub_(1)


def conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """A 'same' 3x3 convolution; ``weight`` may be a channel slice of a larger kernel."""
    return F.conv2d(x, weight, bias, padding=1)


class ConvGRUCell(nn.Module):
    """One ConvGRU step.

    Shape:
        ``state`` and ``inputs``: ``(N, channels, H, W)``; returns the new state, same shape.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gates = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)  # [z; r]
        self.candidate = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def input_part(self, inputs: torch.Tensor) -> GRUInputs:
        """``W * x + b`` of the update gate, the reset gate and (doubled) the candidate.

        ``(M, C, H, W)`` -> three ``(M, C, H, W)`` tensors. They are separate
        convolutions, not channel slices of one, so that the elementwise steps run on
        contiguous tensors (channel slices of a channels-last tensor are strided and
        several times slower to read in bfloat16). The candidate's part is doubled for
        :func:`tanh_via_sigmoid`.
        """
        c = self.channels
        weight, bias = self.gates.weight, self.gates.bias
        return (
            conv3x3(inputs, weight[:c, c:], bias[:c]),
            conv3x3(inputs, weight[c:, c:], bias[c:]),
            conv3x3(inputs, 2 * self.candidate.weight[:, c:], 2 * self.candidate.bias),
        )

    def step(self, state: torch.Tensor, input_part: GRUInputs) -> torch.Tensor:
        """The new state from the previous one and :meth:`input_part` of the inputs."""
        c = self.channels
        update_x, reset_x, candidate_x = input_part
        update = torch.sigmoid(conv3x3(state, self.gates.weight[:c, :c]) + update_x)
        reset = torch.sigmoid(conv3x3(state, self.gates.weight[c:, :c]) + reset_x)
        doubled = conv3x3(reset * state, 2 * self.candidate.weight[:, :c]) + candidate_x
        candidate = tanh_via_sigmoid(doubled).to(state.dtype)  # no-ops outside autocast
        return torch.lerp(state, candidate, update.to(state.dtype))

    def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.step(state, self.input_part(inputs))


class FusedConvGRUCell(ConvGRUCell):
    """A ConvGRU step whose new state is fused with the state of the opposite pass.

    Used by the second (ascending) pass of the encoder and of the decoder:
    ``h = lrelu(conv([gru(state, inputs), opposite]))``, computed as
    ``lrelu(conv_h(gru(...)) + opposite_part(opposite))``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.fuse = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def opposite_part(self, opposite: torch.Tensor) -> torch.Tensor:
        """The opposite state's half of the fusion (with its bias): ``(M, C, H, W)``."""
        return conv3x3(opposite, self.fuse.weight[:, self.channels :], self.fuse.bias)

    def fused_step(
        self, state: torch.Tensor, input_part: torch.Tensor, opposite_part: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`step`, then the fusion with a precomputed :meth:`opposite_part`."""
        state = self.step(state, input_part)
        fused = conv3x3(state, self.fuse.weight[:, : self.channels]) + opposite_part
        return F.leaky_relu(fused, 0.1)

    def forward(  # type: ignore[override]
        self, state: torch.Tensor, inputs: torch.Tensor, opposite: torch.Tensor
    ) -> torch.Tensor:
        return self.fused_step(state, self.input_part(inputs), self.opposite_part(opposite))
