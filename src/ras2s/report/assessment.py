"""Figures and the HTML page of a no-reference assessment (:mod:`ras2s.assess`).

``assessment_report(out_dir, noisy, denoised, ...)`` writes ``report.html`` with these
figures, each also saved as a PNG beside it and embedded as base64:

- ``sigma_per_band.png``: the estimated noise sigma of every band, one line per cube;
- ``false_colour.png``: every cube in false colour, bands picked by wavelength (650,
  550, 460 nm) when the file gives wavelengths, one shared stretch;
- ``noisiest_bands.png``: the three bands with the highest sigma in the input, before
  and after, one shared stretch per band;
- ``residual_maps.png``: the residual ``noisy - denoised`` (method noise) of the
  noisiest band, signed, and its RMS over all bands, per denoised cube;
- ``column_profiles.png``: column-mean profiles of the stripiest band (highest stripe
  index in the input), every cube;
- ``spectra.png``: spectra of every cube at three pixels.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..assess import COLUMNS, band_table, named_cubes, nodata_mask, summarise
from ..io import write_text_atomically
from . import figures
from .html import REPORT_NAME, figures_html, table_html, write_page

__all__ = [
    "RGB_NM",
    "assessment_report",
    "bands_by_wavelength",
    "write_assessment",
    "write_band_table",
]

#: Target wavelengths (nm) of the red, green and blue channels of the false colour.
RGB_NM = (650.0, 550.0, 460.0)


def bands_by_wavelength(wavelengths: Sequence[float] | None, n_bands: int) -> tuple[int, int, int]:
    """(red, green, blue) band indices nearest to 650, 550 and 460 nm.

    Wavelengths below 100 are taken as micrometres. Without wavelengths, or when none
    falls within 400-1000 nm, :func:`ras2s.report.figures.default_bands` decides.

    Examples
    --------
    >>> bands_by_wavelength([450, 500, 550, 600, 650], 5)
    (4, 2, 0)
    >>> bands_by_wavelength([0.45, 0.55, 0.65], 3)
    (2, 1, 0)
    """
    if wavelengths is None or len(wavelengths) != n_bands:
        return figures.default_bands(n_bands)
    wl = np.asarray([float(w) for w in wavelengths])
    if np.nanmax(wl) < 100:
        wl = wl * 1000.0
    if not np.any((wl >= 400) & (wl <= 1000)):
        return figures.default_bands(n_bands)
    return tuple(int(np.nanargmin(np.abs(wl - nm))) for nm in RGB_NM)  # type: ignore[return-value]


def _x_axis(wavelengths: Sequence[float] | None, bands: int) -> tuple[np.ndarray, str]:
    if wavelengths is None:
        return np.arange(bands), "band"
    return np.asarray([float(w) for w in wavelengths]), "wavelength"


def _masked(cube: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = cube.astype(np.float64)
    out[mask] = np.nan
    return out


def _sigma_figure(rows, names, wavelengths, bands, path) -> None:
    x, label = _x_axis(wavelengths, bands)
    fig = figures._new_figure(7.0, 3.4, figures._DPI)
    ax = fig.add_subplot(1, 1, 1)
    for name in names:
        sig = [r["sigma"] for r in rows if r["cube"] == name]
        ax.plot(x, sig, marker="." if bands < 60 else None, linewidth=1.1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("estimated sigma (data units)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figures._save(fig, path)


def _image_grid(panels, cols, path, *, cmap=None, colorbar=False) -> None:
    """panels: list of rows, each a list of (title, image, vmin, vmax)."""
    rows = len(panels)
    size = figures._PANEL_INCHES
    fig = figures._new_figure(cols * size, rows * (size + figures._TITLE_INCHES), figures._DPI)
    for r, row in enumerate(panels):
        for c, (title, image, vmin, vmax) in enumerate(row):
            ax = figures._image_axes(fig, r * cols + c, cols, rows)
            shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            if colorbar and image.ndim == 2:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    figures._save(fig, path)


def _false_colour_figure(cubes, idx, path) -> None:
    lim = figures.stretch_limits(cubes["noisy"], idx)
    row = [
        (f"{name}\nbands {idx}", figures.false_colour(c, idx, limits=lim), None, None)
        for name, c in cubes.items()
    ]
    _image_grid([row], len(row), path)


def _noisiest_figure(cubes, sigma, path) -> list[int]:
    order = [int(b) for b in np.argsort(-np.nan_to_num(sigma, nan=-np.inf))[:3]]
    panels = []
    for b in order:
        ref = cubes["noisy"][b].astype(np.float64)
        finite = ref[np.isfinite(ref)]
        lo, hi = np.percentile(finite, (2, 98)) if finite.size else (0.0, 1.0)
        row = []
        for name, c in cubes.items():
            row.append((f"{name}: band {b}\ninput sigma {sigma[b]:.3g}", c[b], lo, hi))
        panels.append(row)
    _image_grid(panels, len(cubes), path, cmap="gray")
    return order


def _rms_map(resid: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # all-missing pixels give NaN, shown blank
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.sqrt(np.nanmean(resid**2, axis=0))


def _residual_figure(noisy, others, band, path) -> None:
    panels_top, panels_bottom = [], []
    resid = {n: noisy.astype(np.float64) - c.astype(np.float64) for n, c in others.items()}
    rms_maps = {n: _rms_map(r) for n, r in resid.items()}
    top = max(float(np.nanpercentile(np.abs(r[band]), 99)) for r in resid.values()) or 1.0
    rms_top = max(float(np.nanpercentile(m, 99)) for m in rms_maps.values())
    for name, r in resid.items():
        panels_top.append((f"{name}: noisy - denoised\nband {band}", r[band], -top, top))
        rms = rms_maps[name]
        panels_bottom.append((f"{name}: RMS over bands", rms, 0.0, rms_top or 1.0))
    rows = len(panels_top)
    size = figures._PANEL_INCHES
    fig = figures._new_figure(2 * size + 1.0, rows * (size + figures._TITLE_INCHES), figures._DPI)
    axes = fig.subplots(rows, 2, squeeze=False)
    for i in range(rows):
        for j, (title, image, vmin, vmax) in enumerate((panels_top[i], panels_bottom[i])):
            ax = axes[i][j]
            shown = ax.imshow(
                image,
                cmap="RdBu_r" if j == 0 else "inferno",
                vmin=vmin,
                vmax=vmax,
                interpolation="nearest",
            )
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    figures._save(fig, path)


def _profiles_figure(cubes, mask, band, path) -> None:
    from ..assess import column_profiles

    fig = figures._new_figure(7.0, 3.2, figures._DPI)
    ax = fig.add_subplot(1, 1, 1)
    for name, c in cubes.items():
        profile = column_profiles(_masked(c[band : band + 1], mask[band : band + 1]))[0]
        ax.plot(profile, linewidth=1.0, label=name)
    ax.set_xlabel("column")
    ax.set_ylabel(f"column mean, band {band}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figures._save(fig, path)


def _spectra_figure(cubes, pixels, wavelengths, path) -> None:
    x, label = _x_axis(wavelengths, cubes["noisy"].shape[0])
    fig = figures._new_figure(3.6 * len(pixels), 3.0, figures._DPI)
    axes = fig.subplots(1, len(pixels), squeeze=False)[0]
    for ax, (y, xx) in zip(axes, pixels, strict=True):
        for name, c in cubes.items():
            ax.plot(x, c[:, y, xx].astype(np.float64), linewidth=1.0, label=name)
        ax.set_title(f"pixel (y={y}, x={xx})", fontsize=9)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("value (data units)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    figures._save(fig, path)


def _pick_pixels(mask: np.ndarray) -> list[tuple[int, int]]:
    """Centre and the quarter points of the diagonal, moved to a valid pixel if needed."""
    h, w = mask.shape[1:]
    valid = ~mask.any(axis=0)
    picks = []
    for y, x in ((h // 2, w // 2), (h // 4, w // 4), ((3 * h) // 4, (3 * w) // 4)):
        if not valid[y, x] and valid.any():
            ys, xs = np.nonzero(valid)
            k = int(np.argmin((ys - y) ** 2 + (xs - x) ** 2))
            y, x = int(ys[k]), int(xs[k])
        picks.append((y, x))
    return picks


def _summary_html(summary: Mapping[str, Any]) -> str:
    header = [
        "cube",
        "median sigma",
        "median stripe index",
        "sigma ratio",
        "residual corr.",
        "residual RMS",
    ]

    def fmt(v: Any) -> str:
        return "" if v is None else f"{v:.4g}"

    rows = [
        [
            name,
            fmt(e.get("median_sigma")),
            fmt(e.get("median_stripe_index")),
            fmt(e.get("sigma_ratio")),
            fmt(e.get("residual_correlation")),
            fmt(e.get("residual_rms")),
        ]
        for name, e in summary["cubes"].items()
    ]
    return table_html(header, [""] + ["right"] * 5, rows)


def assessment_report(
    out_dir: str | os.PathLike,
    noisy: Any,
    denoised: Mapping[str, Any] | None = None,
    *,
    rows: list[dict[str, Any]] | None = None,
    summary: Mapping[str, Any] | None = None,
    wavelengths: Sequence[float] | None = None,
    nodata: float | None = None,
    title: str = "ras2s no-reference assessment",
) -> Path:
    """Write ``report.html`` and its PNG figures (see the module notes) into ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created if missing).
    noisy : array_like, shape (bands, H, W)
        The input cube, data units.
    denoised : mapping of str to array_like, optional
        Denoised cubes by name, same shape.
    rows, summary
        :func:`ras2s.assess.band_table` and :func:`ras2s.assess.summarise` results for
        these cubes (computed when absent).
    wavelengths : sequence of float, optional
        One per band; x axes in wavelength and the false colour picked by wavelength.
    nodata : float, optional
        Missing-pixel value (shown blank, left out of the statistics).
    title : str
        Page title.

    Returns
    -------
    pathlib.Path
        ``out_dir / "report.html"``.
    """
    cubes = named_cubes(noisy, denoised)
    ref = cubes["noisy"]
    others = {k: v for k, v in cubes.items() if k != "noisy"}
    if rows is None:
        rows = band_table(ref, others, wavelengths=wavelengths, nodata=nodata)
    if summary is None:
        summary = summarise(ref, others, rows=rows, wavelengths=wavelengths, nodata=nodata)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = _figures(out, cubes, rows, wavelengths, nodata_mask(ref, nodata))
    sections = [
        "<h2>Summary</h2>\n" + _summary_html(summary),
        "<p>sigma: "
        + html.escape(summary["sigma_method"])
        + ". Stripe index: "
        + html.escape(summary["stripe_method"])
        + ". Sigma ratio: median over bands of "
        "sigma after / sigma before. Residual correlation: median over bands of the "
        "Pearson correlation of noisy - denoised with denoised (near 0: only noise "
        "removed). Per-band values are in per_band.csv.</p>",
        "<h2>Figures</h2>\n" + figures_html(out, made),
        "<h2>summary.json</h2>\n<pre>" + html.escape(json.dumps(summary, indent=2)) + "</pre>",
    ]
    return write_page(out / REPORT_NAME, title, sections)


def _figures(
    out: Path,
    cubes: Mapping[str, np.ndarray],
    rows: list[dict[str, Any]],
    wavelengths: Sequence[float] | None,
    mask: np.ndarray,
) -> list[tuple[str, str]]:
    """Draw the report's PNG figures into ``out``; ``(file name, caption)`` of each."""
    ref = cubes["noisy"]
    others = [k for k in cubes if k != "noisy"]
    shown = {n: _masked(c, mask) if mask.any() else c for n, c in cubes.items()}
    sigma = np.array([r["sigma"] for r in rows if r["cube"] == "noisy"])
    stripes = np.array([r["stripe_index"] for r in rows if r["cube"] == "noisy"])
    idx = bands_by_wavelength(wavelengths, ref.shape[0])
    made: list[tuple[str, str]] = []

    _sigma_figure(rows, list(cubes), wavelengths, ref.shape[0], out / "sigma_per_band.png")
    made.append(("sigma_per_band.png", "Estimated noise sigma per band (wavelet-MAD, log scale)"))
    _false_colour_figure(shown, idx, out / "false_colour.png")
    how = "by wavelength (650/550/460 nm)" if wavelengths is not None else "by band index"
    made.append(
        ("false_colour.png", f"False colour, bands {idx} picked {how}; stretch of the input")
    )
    order = _noisiest_figure(shown, sigma, out / "noisiest_bands.png")
    made.append(
        (
            "noisiest_bands.png",
            f"The noisiest input bands {order} before and after (2-98 % stretch of the input)",
        )
    )
    if others:
        _residual_figure(
            shown["noisy"], {n: shown[n] for n in others}, order[0], out / "residual_maps.png"
        )
        made.append(
            (
                "residual_maps.png",
                f"Method noise: noisy - denoised in band {order[0]} (signed) and its RMS over "
                "bands; structure here is signal the method removed",
            )
        )
    stripiest = int(np.nanargmax(stripes)) if np.isfinite(stripes).any() else 0
    _profiles_figure(cubes, mask, stripiest, out / "column_profiles.png")
    made.append(
        (
            "column_profiles.png",
            f"Column-mean profiles of band {stripiest}, the input's highest stripe index",
        )
    )
    pixels = _pick_pixels(mask)
    _spectra_figure(shown, pixels, wavelengths, out / "spectra.png")
    made.append(("spectra.png", f"Spectra at pixels (y, x) {pixels}"))
    return made


def write_band_table(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write :func:`ras2s.assess.band_table` rows as CSV, atomically.

    Columns :data:`ras2s.assess.COLUMNS`; NaN and None are written as empty cells.
    """

    def cell(value: Any) -> Any:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return ""
        return f"{value:.6g}" if isinstance(value, float) else value

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([cell(row[c]) for c in COLUMNS])
    return write_text_atomically(path, text.getvalue())


def write_assessment(
    out_dir: str | os.PathLike,
    noisy: Any,
    denoised: Mapping[str, Any] | None = None,
    *,
    wavelengths: Sequence[float] | None = None,
    nodata: float | None = None,
    settings: Mapping[str, Any] | None = None,
    report: bool = True,
) -> dict[str, Path]:
    """Assess ``noisy`` (and denoised versions) and write the results into ``out_dir``.

    Writes ``per_band.csv`` (:func:`ras2s.assess.band_table`), ``summary.json``
    (:func:`ras2s.assess.summarise`,
    plus ``settings``) and, with ``report=True``, ``report.html`` with its figures
    (:func:`assessment_report`; needs matplotlib).

    Returns
    -------
    dict of str to pathlib.Path
        ``{"per_band": ..., "summary": ..., "report": ...}`` (no ``"report"`` when
        ``report=False``).
    """
    cubes = named_cubes(noisy, denoised)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    others = {k: v for k, v in cubes.items() if k != "noisy"}
    rows = band_table(cubes["noisy"], others, wavelengths=wavelengths, nodata=nodata)
    summary = summarise(cubes["noisy"], others, rows=rows, wavelengths=wavelengths, nodata=nodata)
    if settings:
        summary["settings"] = dict(settings)
    written = {"per_band": write_band_table(rows, out / "per_band.csv")}
    summary_text = json.dumps(summary, indent=2) + "\n"
    written["summary"] = write_text_atomically(out / "summary.json", summary_text)
    if report:
        written["report"] = assessment_report(
            out,
            cubes["noisy"],
            others,
            rows=rows,
            summary=summary,
            wavelengths=wavelengths,
            nodata=nodata,
        )
    return written
