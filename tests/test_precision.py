"""The precision setting: auto/fp32/bf16 resolution, bf16 models, memory model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ras2s
from ras2s import precision as P
from ras2s.errors import InputError
from ras2s.inference import network_bytes, plan_tiles
from ras2s.model import RAS2S, RAS2SConfig


def test_explicit_precisions_are_kept_and_unknown_ones_refused():
    assert P.resolve_precision("fp32") == "fp32"
    assert P.resolve_precision("bf16") == "bf16"
    with pytest.raises(InputError, match="precision must be one of"):
        P.resolve_precision("fp16")


def test_auto_is_fp32_while_bf16_misses_the_accuracy_budget(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert P.resolve_precision("auto", "cpu") == "fp32"
    assert "--precision bf16" in P.describe_auto("cpu")
    monkeypatch.setattr(P, "BF16_MEETS_ACCURACY_BUDGET", True)
    assert P.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.resolve_precision("auto", "cpu") == "fp32"
    assert "no native bfloat16" in P.describe_auto("cpu")


def test_training_auto_is_bf16_mixed_where_native(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert P.training_precision("auto", "cpu") == "bf16-mixed"
    assert P.training_precision("32", "cpu") == "32"
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.training_precision("auto", "cpu") == "32"


def test_cpu_flags_agree_with_torch_where_torch_can_tell():
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is None:
        pytest.skip("this torch has no AVX512-BF16 check to compare with")
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert P.cpu_has_native_bf16() == (check() or amx())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_apply_precision_sets_dtype_and_channels_last(precision):
    model = P.apply_precision(RAS2S(RAS2SConfig(channels=4, regions=2)).eval(), precision)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    assert model.precision == precision
    assert all(p.dtype == dtype for p in model.parameters())
    four_d = [p for p in model.parameters() if p.ndim == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    x = torch.rand(2, 5, 12, 10)
    with torch.inference_mode():
        y = model(x)
    assert y.dtype == torch.float32 and y.shape == x.shape and torch.isfinite(y).all()


def test_bf16_and_fp32_agree_on_a_small_model():
    torch.manual_seed(0)
    fp32 = RAS2S(RAS2SConfig(channels=6, regions=2)).eval()
    bf16 = P.apply_precision(RAS2S(fp32.config).eval(), "bf16")
    bf16.load_state_dict(fp32.state_dict())
    x = torch.rand(1, 7, 16, 16)
    with torch.inference_mode():
        difference = (fp32(x) - bf16(x)).abs()
    assert float(difference.mean()) < 1e-2


def test_bf16_gradients_flow_under_autocast():
    torch.manual_seed(0)
    model = P.apply_precision(RAS2S(RAS2SConfig(channels=4, regions=2)), "fp32").train()
    x = torch.rand(2, 5, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = (model(x) - x).square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bf16_halves_the_network_memory_and_gives_larger_tiles():
    assert network_bytes(31, 1000, precision="bf16") * 2 == pytest.approx(
        network_bytes(31, 1000), rel=1e-3
    )
    # a budget whose fp32 tiles lie below the 256 px throughput cap of large images
    shape = (31, 2048, 2048)
    fp32_tile, _ = plan_tiles(shape, np.float32, max_memory=3 << 29, precision="fp32")
    bf16_tile, _ = plan_tiles(shape, np.float32, max_memory=3 << 29, precision="bf16")
    assert max(np.atleast_1d(fp32_tile)) < 256
    assert np.prod(bf16_tile) > np.prod(fp32_tile)


def test_denoise_takes_a_precision(rng):
    cube = rng.random((6, 20, 20), dtype=np.float32)
    fp32 = ras2s.denoise(cube, precision="fp32")
    bf16 = ras2s.denoise(cube, precision="bf16")
    assert bf16.dtype == cube.dtype and bf16.shape == cube.shape
    assert np.abs(fp32 - bf16).mean() < 1e-2
    with pytest.raises(InputError):
        ras2s.denoise(cube, precision="half")
