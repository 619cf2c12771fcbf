"""Shared fixtures: a seeded rng, tiny models, and the path to ../shared when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ras2s.model import RAS2S, RAS2SConfig
from ras2s.weights import save_weights

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"
OFFICIAL = REFERENCE / "s2s_official.pth"


def need(path: Path) -> Path:
    """Skip the calling test, saying why, when a ../shared file is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared reference data is not checked out here)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_model() -> RAS2S:
    """A small randomly initialised RAS2S (C=4) for fast tests."""
    torch.manual_seed(0)
    return RAS2S(RAS2SConfig(channels=4, regions=2, reach=1)).eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_model) -> Path:
    """The tiny model saved as a ras2s checkpoint file."""
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_weights(tiny_model, path, card={"purpose": "tests"})
    return path
