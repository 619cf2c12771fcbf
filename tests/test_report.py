"""Figures and the HTML report: headless, real content, tables and images all there."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from ras2s.errors import InputError  # noqa: E402
from ras2s.report import (  # noqa: E402
    INSET_COLOUR,
    build_report,
    comparison_figure,
    csv_to_html,
    default_bands,
    error_maps,
    false_colour,
    inset_geometry,
    inset_panel,
    markdown_to_html,
    per_band_psnr_figure,
    spectral_difference_figure,
    stretch_limits,
    write_preview,
)

BANDS, SIZE = 31, 48
FRAME = np.array(INSET_COLOUR, dtype=np.uint8)


def _png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _is_frame(img: np.ndarray) -> np.ndarray:
    return np.all(img == FRAME, axis=-1)


def _no_pyplot_figures():
    if "matplotlib.pyplot" in sys.modules:  # only if someone else imported it
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


# ---------------------------------------------------------------- false colour
def test_default_bands():
    assert default_bands(31) == (27, 16, 6)
    assert default_bands(224) == (27, 16, 6)
    assert default_bands(10) == (8, 4, 2)
    assert all(0 <= b < 162 for b in default_bands(162))


def test_false_colour_shape_and_shared_stretch(report_cubes):
    clean, noisy, _ = report_cubes
    rgb = false_colour(clean)
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == 255  # 2-98 % stretch saturates the tails
    lim = stretch_limits(clean)
    brighter = false_colour(clean + 0.2, limits=lim)
    assert brighter.mean() > rgb.mean() + 20  # the clean stretch is reused, not redone
    np.testing.assert_array_equal(false_colour(clean + 0.2), rgb)  # own stretch: same
    with pytest.raises(InputError, match="three indices"):
        false_colour(clean, bands=(40, 1, 2))


def test_inset_panel_draws_box_and_magnified_copy(report_cubes):
    rgb = false_colour(report_cubes[0])
    inset = (30, 28, 10)  # lower right quadrant: the copy goes to the top left
    out = inset_panel(rgb, inset)
    geo = inset_geometry(rgb.shape[:2], inset)
    assert out.shape == rgb.shape
    assert geo["my0"] == 0 and geo["mx0"] == 0 and geo["thickness"] == 1
    m = geo["msize"]
    assert m == round(0.45 * SIZE)
    y0, x0, s = inset
    assert _is_frame(out[y0, x0 : x0 + s]).all() and _is_frame(out[y0 + s - 1, x0 : x0 + s]).all()
    assert _is_frame(out[y0 : y0 + s, x0]).all() and _is_frame(out[y0 : y0 + s, x0 + s - 1]).all()
    assert _is_frame(out[0, :m]).all() and _is_frame(out[:m, m - 1]).all()
    assert not _is_frame(out[m, m]) or _is_frame(rgb[m, m])
    # inside the box: the image; inside the copy: the crop, magnified (nearest)
    np.testing.assert_array_equal(
        out[y0 + 1 : y0 + s - 1, x0 + 1 : x0 + s - 1], rgb[y0 + 1 : y0 + s - 1, x0 + 1 : x0 + s - 1]
    )
    pick = (np.arange(m) * s) // m
    np.testing.assert_array_equal(
        out[1 : m - 1, 1 : m - 1], rgb[y0 : y0 + s, x0 : x0 + s][pick][:, pick][1:-1, 1:-1]
    )
    # upscaled: box and copy scale with it, the copy goes opposite the box
    big = inset_panel(np.zeros((50, 50, 3), np.uint8), (5, 5, 10), upscale=4)
    geo = inset_geometry((50, 50), (5, 5, 10), upscale=4)
    assert big.shape == (200, 200, 3)
    assert geo["thickness"] == 2 and geo["by0"] == 20 and geo["bsize"] == 40
    assert geo["my0"] == geo["mx0"] == 200 - geo["msize"] == 200 - 90
    assert _is_frame(big[20:22, 20:60]).all() and _is_frame(big[-2:, 110:]).all()
    assert not _is_frame(big[25:55, 25:55]).any()
    with pytest.raises(InputError, match="inside"):
        inset_panel(rgb, (40, 40, 20))


# --------------------------------------------------------------------- figures
def test_comparison_figure(report_cubes, tmp_path):
    clean, noisy, results = report_cubes
    path = tmp_path / "cmp.png"
    fig = comparison_figure(clean, noisy, results, inset=(30, 28, 10), path=path)
    img = _png(path)
    w, h = (fig.get_size_inches() * fig.dpi).round().astype(int)
    assert img.shape == (h, w, 3) and (w, h) == (4 * 240, 285)
    assert img.std() > 20
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("clean") and "dB" in titles[1] and titles[2].startswith("good")
    # the inset frame shows in every panel, at the box's place in the axes
    for ax in fig.axes:
        bb = ax.get_window_extent()
        x0, x1 = int(bb.x0), int(np.ceil(bb.x1))
        y0, y1 = h - int(np.ceil(bb.y1)), h - int(bb.y0)
        panel = img[y0:y1, x0:x1]
        red = _is_frame(panel)
        ys, xs = np.nonzero(red)
        assert red.sum() > 100
        ph, pw = red.shape
        # box top-left at (30, 28) of 48 -> lower right part; copy at the top left
        assert ys.min() < 0.05 * ph and xs.min() < 0.05 * pw
        assert red[int(ph * 30.3 / SIZE), int(pw * 32 / SIZE)]  # top edge of the box
        assert red[int(ph * 34 / SIZE), int(pw * 28.3 / SIZE)]  # left edge of the box
        assert not red[int(ph * 34 / SIZE), int(pw * 32 / SIZE)]  # inside the box
    _no_pyplot_figures()


def test_error_spectral_and_band_figures(report_cubes, tmp_path):
    clean, noisy, results = report_cubes
    for fn, kwargs, name in (
        (error_maps, {}, "err.png"),
        (spectral_difference_figure, {"pixels": [(5, 5), (20, 30)]}, "spec.png"),
        (per_band_psnr_figure, {}, "band.png"),
    ):
        fig = fn(clean, {"noisy": noisy, **results}, path=tmp_path / name, **kwargs)
        img = _png(tmp_path / name)
        w, h = (fig.get_size_inches() * fig.dpi).round().astype(int)
        assert img.shape == (h, w, 3)
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    fig = spectral_difference_figure(clean, results, [(5, 5), (20, 30)])
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    with pytest.raises(InputError, match="outside"):
        spectral_difference_figure(clean, results, [(SIZE, 0)])
    with pytest.raises(InputError, match="differs"):
        error_maps(clean, {"bad": clean[:3]})
    _no_pyplot_figures()


def test_write_preview_two_panels(report_cubes, tmp_path):
    clean, noisy, results = report_cubes
    path = write_preview(noisy, results["good"], tmp_path / "preview.png")
    img = _png(path)
    assert img.shape == (285, 480, 3)
    left, right = img[:, :240].astype(int), img[:, 240:].astype(int)
    assert left.std() > 20 and right.std() > 20
    assert np.abs(left - right).mean() > 5  # noisy and denoised differ


# --------------------------------------------------------------------- HTML
TABLE_MD = """# Results on CAVE (MSSIM: paper convention)

| method | MPSNR | MSSIM |
|:--|--:|--:|
| noisy | 18.59 | 0.6517 |
| `bm4d` | 30.01 | 0.95 |
| **ras2s** | 33.10 | 0.97 |

| case | n |
|---|---|
| iid30 | 3 |
"""


def test_markdown_and_csv_rendering():
    html = markdown_to_html(TABLE_MD)
    assert html.count("<table>") == 2 and html.count("<tr>") == 2 + 3 + 1
    assert "<code>bm4d</code>" in html and "<b>ras2s</b>" in html and "<h3>" in html
    assert 'style="text-align:right"' in html
    assert markdown_to_html("| a <b> |\n|---|\n| x |").count("&lt;b&gt;") == 1
    assert csv_to_html("a,b\n1,2\n3,4\n").count("<tr>") == 3


def test_build_report_embeds_everything(report_cubes, tmp_path):
    clean, noisy, results = report_cubes
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "table.md").write_text(TABLE_MD)
    (evaluation / "per_image.csv").write_text(
        "image,method,mpsnr\ncloth,noisy,18.6\ncloth,bm4d,30.0\n"
    )
    (evaluation / "results.json").write_text(json.dumps({"case": "iid30", "seed": 0}))
    out = tmp_path / "report"
    page = build_report(
        out,
        results_dir=evaluation,
        clean=clean,
        noisy=noisy,
        results=results,
        settings={"case": "iid30"},
    ).read_text()
    assert page.count("<img") == 4 and page.count("data:image/png;base64,") == 4
    for name in ("comparison", "error_maps", "spectral_difference", "per_band_psnr"):
        assert (out / f"{name}.png").stat().st_size > 5000
    # metrics (3 rows) + table.md (3 + 1) + per_image.csv (2) + settings
    assert page.count("<table>") == 5
    metrics = page.split("<h2>Metrics</h2>")[1].split("</table>")[0]
    assert metrics.count("<tr>") == 1 + 3 and "noisy" in metrics and "fair" in metrics
    tables = page.split("<h2>Evaluation results")[1]
    assert tables.count("<tr>") >= 2 + 3 + 1 + 1 + 2
    assert "&quot;seed&quot;: 0" in page and "iid30" in page
    assert "<h2>Settings</h2>" in page
    _no_pyplot_figures()


def test_build_report_results_only_and_errors(tmp_path, report_cubes):
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "table.md").write_text(TABLE_MD)
    page = build_report(tmp_path / "r", results_dir=evaluation).read_text()
    assert page.count("<img") == 0 and page.count("<table>") == 3
    with pytest.raises(InputError, match="nothing to report"):
        build_report(tmp_path / "x")
    with pytest.raises(InputError, match="clean"):
        build_report(tmp_path / "x", noisy=report_cubes[1])
    with pytest.raises(InputError, match="none of"):
        build_report(tmp_path / "x", results_dir=tmp_path / "r")


# ----------------------------------------------------------------------- CLI
