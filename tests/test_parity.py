"""Parity with the authors' released checkpoint on their reference vectors.

For every case of ../shared/reference/parity.npz, RAS2S loaded with the authors'
checkpoint must reproduce the stored output of the authors' code within 1e-4 (CPU,
float32, whole image in one pass).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ras2s.weights import load_model

from .conftest import OFFICIAL, REFERENCE, need

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def official_model():
    return load_model(need(OFFICIAL), precision="fp32")


@pytest.fixture(scope="module")
def parity():
    return np.load(need(REFERENCE / "parity.npz"))


def test_parity_file_has_the_five_cases(parity):
    meta = json.loads(str(parity["meta"]))
    assert sorted(meta["cases"]) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("case", list("abcde"))
def test_official_output_parity(official_model, parity, case):
    noisy = torch.from_numpy(parity[f"{case}_noisy"])[None]
    with torch.inference_mode():
        ours = official_model(noisy)[0].numpy()
    expected = parity[f"{case}_official"]
    assert ours.shape == expected.shape
    difference = float(np.abs(ours - expected).max())
    assert difference <= TOLERANCE, f"case {case}: max abs difference {difference:.3g}"


def test_official_model_is_the_released_one(official_model):
    assert sum(p.numel() for p in official_model.parameters()) == 84_105
    assert official_model.config.to_dict() == {"channels": 14, "regions": 3, "reach": 1}
    assert not official_model.training


@pytest.mark.parametrize("case", list("abcde"))
def test_bf16_stays_close_to_the_authors_output(parity, case):
    # bf16 keeps 8 bits of mantissa: the output is not exact, but within a small
    # fraction of the data range everywhere and far below the denoising error.
    model = load_model(need(OFFICIAL), precision="bf16")
    noisy = torch.from_numpy(parity[f"{case}_noisy"])[None]
    with torch.inference_mode():
        ours = model(noisy)[0]
    assert ours.dtype == torch.float32
    expected = torch.from_numpy(parity[f"{case}_official"])
    difference = (ours - expected).abs()
    assert float(difference.mean()) < 1e-2, float(difference.mean())
    assert float(difference.max()) < 0.25, float(difference.max())
