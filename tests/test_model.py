"""The network: parameter counts, shapes, dtypes, sizes, gradients, selection op."""

from __future__ import annotations

import pytest
import torch

from ras2s.errors import InputError
from ras2s.model import RAS2S, RAS2SConfig, count_parameters
from ras2s.model.decoder import AdjacentAttention, attention_window
from ras2s.model.regions import select_region

# Paper (supplementary) Table 3, Params(M) for C = 8..20, and our exact counts.
TABLE3_MILLIONS = {8: 0.028, 10: 0.043, 12: 0.062, 14: 0.084, 16: 0.109, 18: 0.138, 20: 0.170}
EXACT = {8: 28_047, 10: 43_373, 12: 62_059, 14: 84_105, 16: 109_511, 18: 138_277, 20: 170_403}


def test_released_model_has_84105_parameters():
    assert count_parameters(RAS2S()) == 84_105


@pytest.mark.parametrize("channels", sorted(TABLE3_MILLIONS))
def test_parameter_counts_match_table3(channels):
    count = count_parameters(RAS2S(RAS2SConfig(channels=channels)))
    assert count == EXACT[channels]
    # The paper truncates to thousands of parameters (109,511 is listed as 0.109 M).
    assert count // 1000 == round(TABLE3_MILLIONS[channels] * 1000)


@pytest.mark.parametrize(
    "shape", [(1, 5, 9, 13), (2, 3, 16, 16), (1, 1, 7, 5), (1, 2, 8, 8), (3, 4, 1, 1)]
)
def test_any_shape_keeps_shape(tiny_model, shape):
    x = torch.rand(shape)
    with torch.inference_mode():
        y = tiny_model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_float64_input_returns_float64(tiny_model):
    x = torch.rand(1, 4, 8, 8, dtype=torch.float64)
    with torch.inference_mode():
        y = tiny_model(x)
    assert y.dtype == torch.float64
    assert torch.allclose(y.float(), tiny_model(x.float()), atol=1e-5)


def test_batch_items_are_independent(tiny_model):
    x = torch.rand(3, 5, 12, 12)
    with torch.inference_mode():
        batched = tiny_model(x)
        single = torch.cat([tiny_model(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_few_bands_are_padded_by_repeating_the_last(tiny_model):
    x = torch.rand(1, 2, 10, 10)
    padded = torch.cat([x, x[:, -1:]], dim=1)
    with torch.inference_mode():
        assert torch.allclose(tiny_model(x), tiny_model(padded)[:, :2], atol=1e-6)


def test_rejects_non_4d(tiny_model):
    with pytest.raises(InputError, match=r"\(N, bands, H, W\)"):
        tiny_model(torch.rand(5, 8, 8))


def test_gradients_flow_to_every_parameter():
    model = RAS2S(RAS2SConfig(channels=4, regions=2))
    model(torch.rand(2, 4, 8, 8)).abs().mean().backward()
    without = [name for name, p in model.named_parameters() if p.grad is None]
    # The routing MLP's last layer starts at zero, so the layer before it gets no gradient
    # on the first step (as in the authors' model); everything else must.
    assert without == []


@pytest.mark.parametrize("reach", [1, 2, 3])
def test_attention_window_is_shifted_inside_the_spectrum(reach):
    for bands in range(2 * reach + 1, 15):
        for band in range(bands):
            window = range(bands)[attention_window(band, bands, reach)]
            assert len(window) == 2 * reach + 1
            assert window[0] >= 0 and window[-1] < bands
            assert band in window
            if reach <= band < bands - reach:  # interior: centred
                assert window[reach] == band


def test_attention_window_at_the_ends():
    assert list(range(31)[attention_window(0, 31, 1)]) == [0, 1, 2]
    assert list(range(31)[attention_window(30, 31, 1)]) == [28, 29, 30]
    assert list(range(31)[attention_window(5, 31, 1)]) == [4, 5, 6]


def test_attention_equals_the_conv3d_form():
    # AAM as the paper (and the authors' code) writes it: a 3x3x3 convolution over the
    # stacked [query, states] volume, tanh, softmax over the states, weighted sum.
    torch.manual_seed(0)
    attention = AdjacentAttention(reach=1)
    query = torch.randn(2, 6, 9, 7)
    states = [torch.randn(2, 6, 9, 7) for _ in range(3)]
    volume = torch.stack([query, *states], dim=1)
    scores = torch.nn.functional.conv3d(
        volume, attention.score.weight, attention.score.bias, padding=1
    )
    expected = (torch.tanh(scores).softmax(dim=1) * volume[:, 1:]).sum(dim=1)
    assert torch.allclose(attention(query, states), expected, atol=1e-5)
    channels_last = [t.contiguous(memory_format=torch.channels_last) for t in [query, *states]]
    assert torch.allclose(attention(channels_last[0], channels_last[1:]), expected, atol=1e-5)


def test_select_region_forward_and_surrogate_gradient():
    torch.manual_seed(0)
    candidates = torch.randn(1, 3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    scores = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    out = select_region(candidates.unbind(1), scores)
    index = scores.argmax(1)
    expected = torch.stack(
        [candidates[0, index[0, i, j], :, i, j] for i in range(4) for j in range(4)]
    ).T.reshape(1, 2, 4, 4)
    assert torch.equal(out, expected)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    # Candidates: gradient only on the selected region. Scores: the softmax surrogate,
    # i.e. the gradient of sum_r softmax(scores)_r * <weight, candidates_r>.
    soft_scores = scores.detach().clone().requires_grad_(True)
    surrogate = soft_scores.softmax(1).unsqueeze(2) * candidates.detach() * weight.unsqueeze(1)
    surrogate.sum().backward()
    assert torch.allclose(scores.grad, soft_scores.grad)
    assert torch.count_nonzero(candidates.grad.abs().sum(2)) == 16


def test_select_region_ties_go_to_the_first_region_like_argmax():
    candidates = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(1, 3, 2, 2, 2).clone()
    scores = torch.tensor(
        [[[1.0, 2.0], [0.5, 0.0]], [[1.0, 2.0], [0.7, 0.0]], [[0.0, 2.0], [0.7, 0.0]]]
    )
    out = select_region(candidates.unbind(1), scores.unsqueeze(0))
    assert torch.equal(out[0, 0], scores.argmax(0).float())
    assert torch.equal(out[0, 0], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
