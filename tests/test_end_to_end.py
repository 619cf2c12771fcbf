"""End to end on a real cube: `ras2s denoise` in every format, with the authors' weights.

The CAVE crop testMSI_3 (100 x 100 x 31) from ../shared/data gets seeded non-iid Gaussian
noise, is written in every supported format, denoised through the command line, read
back and scored. Marked slow (about a minute per format on 2 CPU cores); run with
``pytest -m slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from ras2s import metrics
from ras2s.cli import main
from ras2s.io import read_cube, write_cube
from ras2s.noise import add_noise

from .conftest import DATA, OFFICIAL, need

pytestmark = pytest.mark.slow

FORMATS = {
    "mat": "scene.mat",
    "npy": "scene.npy",
    "npz": "scene.npz",
    "h5": "scene.h5",
    "tiff": "scene.tif",
    "envi": "scene.hdr",
    "png": "scene_png",
}


@pytest.fixture(scope="module")
def clean_and_noisy():
    cube = read_cube(need(DATA / "CAVE_KBR_crops" / "testMSI_3.mat")).data.astype(np.float32)
    clean = (cube - cube.min()) / (cube.max() - cube.min())
    noisy = add_noise(clean, "noniid", rng=0)
    return clean, noisy


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_denoise_real_cube_in_every_format(tmp_path, clean_and_noisy, fmt):
    clean, noisy = clean_and_noisy
    source = tmp_path / FORMATS[fmt]
    if fmt == "png":  # 16-bit PNG bands: quantise the noisy cube's own range
        lo, hi = noisy.min(), noisy.max()
        stored = np.round((noisy - lo) / (hi - lo) * 65535).astype(np.uint16)
    else:
        stored = noisy
    layout = ["--layout", "BHW"] if fmt in ("npy", "npz", "h5") else []
    write_cube(source, stored, layout="BHW" if layout else None)
    result = CliRunner().invoke(
        main,
        ["denoise", str(source), "--weights", str(need(OFFICIAL)), "-q", *layout],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out_path = next(p for p in tmp_path.iterdir() if "_denoised" in p.name and p.suffix != ".img")
    out = read_cube(out_path, layout=layout[1] if layout else None).data
    assert out.shape == stored.shape and out.dtype == stored.dtype
    # Score in the clean cube's units: undo denoise's min-max mapping of this file.
    out = out.astype(np.float64)
    if fmt == "png":
        out = out / 65535 * (hi - lo) + lo
    gain = metrics.mpsnr(out, clean) - metrics.mpsnr(noisy, clean)
    assert gain > 8.0, f"{fmt}: only {gain:.2f} dB over the noisy input"
