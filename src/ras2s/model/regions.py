"""Discriminative semantic region learning (the SSRA stage of the paper).

For each encoded band state ``h`` (``(N, C, H, W)``):

1. ``region_num`` candidate 3x3 filters banks are predicted from ``h`` itself (average
   pooled to 3x3, two 1x1 convolutions) and applied to ``h`` (a per-sample dynamic
   convolution), giving ``region_num`` candidate outputs of ``C`` channels.
2. Two classifiers assign every pixel to one region:

   - the *spatial branch*, ``SpecDynConv``: a 3x3 convolution ``C -> region_num`` whose
     input channels are re-weighted by a routing MLP on the globally pooled ``h``;
   - the *spectral branch*, ``SpecClassifier``: a per-pixel linear layer ``C -> region_num``.

   Each branch picks, per pixel, the candidate of its arg-max region (hard selection in
   the forward pass; a softmax surrogate gradient in the backward pass).
3. The two selections are fused by a 3x3 convolution and added to ``h``.

The pooling steps make the output depend on the whole image (or tile) it sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .convgru import conv3x3


def first_max_index(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(dim=1, keepdim=True)`` for ``(N, R, H, W)`` scores, as int64.

    A running comparison over the few regions: PyTorch's CPU ``argmax`` over a short
    middle dimension is several times slower (about 3 % of the whole forward pass at
    128 x 128 x 31). Strict ``>`` keeps the first maximum on ties, as ``argmax`` does;
    NaN scores never win (``argmax`` would pick them; the network never makes them).
    """
    best, index = scores[:, :1], torch.zeros_like(scores[:, :1], dtype=torch.long)
    for r in range(1, scores.shape[1]):
        better = scores[:, r : r + 1] > best
        index.masked_fill_(better, r)
        best = torch.maximum(best, scores[:, r : r + 1])
    return index


class _SelectRegion(torch.autograd.Function):
    """Pick, per pixel, the candidate of the arg-max region; softmax gradient to the scores.

    ``scores``: ``(M, R, H, W)``; ``candidates``: ``R`` tensors ``(M, C, H, W)``;
    output ``(M, C, H, W)``.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, *candidates: torch.Tensor) -> torch.Tensor:  # noqa: D102
        index = first_max_index(scores)
        ctx.save_for_backward(scores, index, *candidates)
        return pick_region(candidates, index)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        scores, index, *candidates = ctx.saved_tensors
        grad_candidates = [torch.where(index == r, grad_output, 0) for r in range(len(candidates))]
        grad_choice = torch.cat(
            [(grad_output * candidate).sum(dim=1, keepdim=True) for candidate in candidates], 1
        ).to(scores.dtype)  # (M, R, H, W)
        soft = scores.softmax(dim=1)
        grad_scores = soft * (grad_choice - (soft * grad_choice).sum(dim=1, keepdim=True))
        return (grad_scores, *grad_candidates)


def pick_region(candidates: Sequence[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """``candidates[index]`` at every pixel.

    ``candidates``: ``R`` tensors ``(M, C, H, W)``; ``index``: int ``(M, 1, H, W)`` in
    ``[0, R)``; returns ``(M, C, H, W)``. A chain of ``where`` over the few regions, in
    the candidates' memory format.
    """
    picked = candidates[-1]
    for r in reversed(range(len(candidates) - 1)):
        picked = torch.where(index == r, candidates[r], picked)
    return picked


def select_region(candidates: Sequence[torch.Tensor], scores: torch.Tensor) -> torch.Tensor:
    """Hard per-pixel selection of the arg-max region's candidate; see :class:`_SelectRegion`.

    ``candidates``: ``R`` tensors ``(M, C, H, W)``; ``scores``: ``(M, R, H, W)``;
    returns ``(M, C, H, W)``.
    """
    return _SelectRegion.apply(scores, *candidates)


class ChannelRouting(nn.Module):
    """Per-sample channel weights ``1 + MLP(avgpool(h))``, shape ``(N, C, 1, 1)``.

    The two layers are ``(3, 1)`` convolutions as in the authors' model; on the pooled
    1x1 map only their centre taps act.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.excite = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=False)
        nn.init.zeros_(self.excite.weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(h, 1)
        return self.excite(F.relu(self.squeeze(pooled))) + 1


class SpatialRegionClassifier(nn.Module):
    """``SpecDynConv``: a 3x3 convolution ``C -> regions`` with routed input channels.

    Shape: ``(N, C, H, W) -> (N, regions, H, W)``.
    """

    def __init__(self, channels: int, regions: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(regions, channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(regions))
        self.routing = ChannelRouting(channels)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.uniform_(self.bias, -1 / (9 * channels) ** 0.5, 1 / (9 * channels) ** 0.5)

    def routed_weight(self, h: torch.Tensor) -> torch.Tensor:
        """Per-sample kernels ``(N, regions, C, 3, 3)`` (the bias is shared)."""
        n, c = h.shape[:2]
        return self.routing(h).reshape(n, 1, c, 1, 1) * self.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weight = self.routed_weight(h)
        scores = [conv3x3(h[k : k + 1], weight[k], self.bias) for k in range(h.shape[0])]
        return torch.cat(scores)


class RegionLearning(nn.Module):
    """The region-aware refinement of one encoded band state (SSRA).

    Each sample's candidate filters and routed classifier kernel are its own, so the
    samples are refined one by one; each region's candidates are a separate convolution
    (contiguous, in the state's memory format) and the fusion convolution is split over
    its two inputs, so no concatenation or layout copy is built.

    Shape: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, channels: int, regions: int) -> None:
        super().__init__()
        self.channels = channels
        self.regions = regions
        self.filter_context = nn.Conv2d(channels, regions * regions, 1)
        self.filter_bank = nn.Conv2d(
            regions * regions, regions * channels * channels, 1, groups=regions
        )
        self.spatial_classifier = SpatialRegionClassifier(channels, regions)
        self.spectral_classifier = nn.Linear(channels, regions)
        self.fuse = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def region_filters(self, h: torch.Tensor) -> torch.Tensor:
        """Per-sample filters ``(N, regions * C, C, 3, 3)`` predicted from ``h``."""
        pooled = F.adaptive_avg_pool2d(h, 3)
        filters = self.filter_bank(torch.sigmoid(self.filter_context(pooled)))
        return filters.reshape(h.shape[0], self.regions * self.channels, self.channels, 3, 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        filters = self.region_filters(h)
        classifier = self.spatial_classifier.routed_weight(h)
        spectral_scores = self.spectral_classifier(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        # split/unbind, not slicing: their backward is one concatenation, where each
        # slice's backward would build a zero tensor the size of the whole batch.
        samples = zip(
            h.split(1), filters.unbind(), classifier.unbind(), spectral_scores.split(1), strict=True
        )
        return torch.cat([self.refine_sample(*sample) for sample in samples])

    def refine_sample(
        self,
        h: torch.Tensor,
        filters: torch.Tensor,
        classifier: torch.Tensor,
        spectral_scores: torch.Tensor,
    ) -> torch.Tensor:
        """One sample ``h`` ``(1, C, H, W)`` with its own filters and classifier kernel."""
        c = self.channels
        candidates = [conv3x3(h, filters[r * c : (r + 1) * c]) for r in range(self.regions)]
        spatial_scores = conv3x3(h, classifier, self.spatial_classifier.bias)
        spatial = select_region(candidates, spatial_scores)
        spectral = select_region(candidates, spectral_scores)
        fused = conv3x3(spatial, self.fuse.weight[:, :c])
        return fused + conv3x3(spectral, self.fuse.weight[:, c:], self.fuse.bias) + h
