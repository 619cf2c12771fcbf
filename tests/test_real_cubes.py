"""The default path on every real cube of ../shared/data: whole, raw, and with noise added.

Slow (a few minutes on 2 cores): marked ``realdata``, run by CI as its own step
(``pytest -m realdata``). Skipped with the reason when ../shared/data is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import DATA, need

pytestmark = pytest.mark.realdata

#: Files of ../shared/data that hold no single cube as shipped: refused in one line,
#: since ras2s never guesses (the refusal names the way out).
NOT_CUBES = {
    "jasperRidge2_R198.mat": "no 3-D numeric array",  # Y is a (198, 10000) matrix
    "Samson.mat": "several 3-D arrays could be the cube",  # abundances 'A' beside 'SamSon'
}
#: ... and the key that picks the cube where there is one.
KEYS = {"Samson.mat": "SamSon"}


def _files() -> list[Path]:
    return sorted(p for p in need(DATA).rglob("*.mat") if p.name not in NOT_CUBES)


def _denoise(*args: object) -> subprocess.CompletedProcess:
    """``ras2s denoise ARGS`` in a subprocess, as the README runs it."""
    command = [sys.executable, "-m", "ras2s", "denoise", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


def _scaled_psnr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """MPSNR of ``estimate`` against ``reference``, both scaled by the reference's range."""
    from ras2s import metrics

    lo, hi = float(reference.min()), float(reference.max())
    scale = lambda x: ((x.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)  # noqa: E731
    return float(metrics.mpsnr(scale(estimate), scale(reference), data_range=1.0))


def test_the_readme_command_on_every_whole_raw_cube_never_diverges(tmp_path):
    """`ras2s denoise FILES --strict`: exit 0, no divergence, an output close to its input."""
    from ras2s.io import read_cube

    files = _files()
    assert len(files) >= 19
    run = _denoise(*files, "-o", tmp_path, "--strict", "-q")
    assert run.returncode == 0, run.stderr
    for name, key in KEYS.items():
        (path,) = need(DATA).rglob(name)
        keyed = _denoise(path, "--key", key, "-o", tmp_path, "--strict", "-q")
        assert keyed.returncode == 0, keyed.stderr
        files.append(path)
    for source in files:
        target = tmp_path / f"{source.stem}_denoised.mat"
        record = json.loads(Path(f"{target}.json").read_text())
        assert record["fallback"] == [] and record["normalise"] == "clean"
        assert record["band_window"] is None  # whole cubes, every band count (17 to 207)
        raw = read_cube(source, key=KEYS.get(source.name)).data
        out = read_cube(target).data
        assert out.shape == raw.shape and out.dtype == raw.dtype
        # real cubes hold little noise: the denoised cube stays close to the raw one
        assert _scaled_psnr(out, raw) > 25, source.name
    for name, why in NOT_CUBES.items():
        (path,) = need(DATA).rglob(name)
        bad = _denoise(path, "-o", tmp_path / "x.mat")
        assert bad.returncode == 2 and why in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize("case", ["mixture", "impulse"])
def test_every_whole_cube_with_noise_added_denoises_without_divergence(case):
    """Each cube scaled to [0, 1], noise added, then ras2s.denoise as shipped (strict)."""
    import ras2s
    from ras2s.io import read_cube

    model = ras2s.load_model("default")
    samson = next(need(DATA).rglob("Samson.mat"))
    for source in [*_files(), samson]:
        raw = read_cube(source, key=KEYS.get(source.name)).data.astype(np.float64)
        clean = ((raw - raw.min()) / (raw.max() - raw.min())).astype(np.float32)
        noisy = ras2s.add_noise(clean, case, rng=0)
        report: dict = {}
        out = ras2s.denoise(noisy, model=model, strict=True, report=report)
        assert report["fallback"] == [] and report["band_window"] is None
        gain = _scaled_psnr(out, clean) - _scaled_psnr(noisy, clean)
        assert gain > 5, (source.name, gain)
