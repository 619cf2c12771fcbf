r"""The convolutional GRU cell of the paper (supplementary eq. 1-4).

.. math::
    z_t = \sigma(W_z * x_t + U_z * h_{t-1} + b_z), \quad
    r_t = \sigma(W_r * x_t + U_r * h_{t-1} + b_r)

    \tilde h_t = \tanh(W_h * x_t + U_h * (r_t \odot h_{t-1}) + b_h), \quad
    h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

``W * x + U * h`` is one 3x3 convolution over the concatenation ``[h, x]``. The update
and reset gates share their input, so they are computed by one convolution with
``2 * channels`` outputs (the authors' checkpoint stores them as two; the weight
converter concatenates them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

    def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(self.gates(torch.cat([state, inputs], dim=1)))
        update, reset = gates.split(self.channels, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([reset * state, inputs], dim=1)))
        return (1 - update) * state + update * candidate


class FusedConvGRUCell(ConvGRUCell):
    """A ConvGRU step whose new state is fused with the state of the opposite pass.

    Used by the second (ascending) pass of the encoder and of the decoder:
    ``h = lrelu(conv([gru(state, inputs), opposite]))``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.fuse = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(  # type: ignore[override]
        self, state: torch.Tensor, inputs: torch.Tensor, opposite: torch.Tensor
    ) -> torch.Tensor:
        state = super().forward(state, inputs)
        return F.leaky_relu(self.fuse(torch.cat([state, opposite], dim=1)), 0.1)
