"""Shared fixtures: a seeded rng, tiny models, and the path to ../shared when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ras2s.data import PrepareConfig, prepare
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


@pytest.fixture(scope="session")
def report_cubes():
    """Clean, noisy and two fake 'denoised' cubes (bands, H, W) in [0, 1]."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48] / 48
    lam = np.linspace(0, 1, 31)[:, None, None]
    clean = 0.2 + 0.3 * np.sin(3 * x + 2 * lam) * np.cos(2 * y) + 0.3 * lam * y
    clean = np.clip(clean, 0, 1).astype(np.float32)
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
    good = (clean + 0.01 * rng.standard_normal(clean.shape)).astype(np.float32)
    fair = (clean + 0.04 * rng.standard_normal(clean.shape)).astype(np.float32)
    return clean, noisy, {"good": good, "fair": fair}


def tiny_store(
    root: Path, names: list[str], bands: int, seed: int, val_list: tuple[str, ...] = ()
) -> Path:
    """A patch store of random ``(bands, 16, 16)`` cubes ``names`` in 8 x 8 patches; its path."""
    rng = np.random.default_rng(seed)
    (root / "src").mkdir(parents=True)
    for name in names:
        np.save(root / "src" / f"{name}.npy", rng.random((bands, 16, 16)).astype(np.float32))
    config = PrepareConfig(
        crop=None, patch=8, scales=(1.0,), strides=(8,), layout="BHW", val_list=val_list
    )
    prepare(root / "src", root / "data", config)
    return root / "data"


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """A tiny patch store: 3 train cubes + 1 val cube of 8 bands, 8 x 8 patches."""
    names = ["c0", "c1", "c2", "c3"]
    return tiny_store(tmp_path_factory.mktemp("store"), names, 8, seed=0, val_list=("c3",))


@pytest.fixture(scope="session")
def store6(tmp_path_factory) -> Path:
    """A second tiny patch store to mix in: 2 train cubes of 6 bands, 8 x 8 patches."""
    return tiny_store(tmp_path_factory.mktemp("store6"), ["m0", "m1"], 6, seed=1)


def folder_digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: sha256 of a file, ``link->target``, or ``dir``."""
    import hashlib
    import os

    digest = {}
    for path in sorted(Path(folder).rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            digest[name] = "link->" + os.readlink(path)
        elif path.is_file():
            digest[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[name] = "dir" if path.is_dir() else "special"
    return digest


@pytest.fixture
def digest():
    """``digest(folder)``: the sha256 of every file in it (data-loss tests compare two)."""
    return folder_digest


@pytest.fixture
def cubes(tmp_path, rng):
    """Two tiny clean cubes on disk (one float, one uint16) and their folder."""
    from ras2s.io import write_cube

    folder = tmp_path / "cubes"
    folder.mkdir()
    write_cube(folder / "alpha.npy", (rng.random((6, 20, 20)) * 50 + 10).astype(np.float32))
    write_cube(folder / "beta.mat", rng.integers(100, 4000, (6, 24, 18), dtype=np.uint16))
    return folder


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts."""
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (the machine is shared; used by the modules
    that run many small network passes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
