"""Figures and an HTML report of denoising results (matplotlib, Agg, no pyplot).

Public API::

    false_colour(cube, bands=None, *, limits=None) -> uint8 (H, W, 3)
    comparison_figure(clean, noisy, results, *, inset=None, bands=None, path=None)
    error_maps(clean, results, *, path=None)
    spectral_difference_figure(clean, results, pixels, *, path=None)
    per_band_psnr_figure(clean, results, *, path=None)
    write_preview(noisy, denoised, path, bands=None)   # before/after PNG
    build_report(out_dir, *, results_dir=None, clean=None, noisy=None, results=None, ...)

matplotlib comes with ``pip install 'ras2s[report]'``; it is imported only when a
figure is drawn.
"""

from __future__ import annotations

from .figures import (
    INSET_COLOUR,
    MissingReportDependencyError,
    comparison_figure,
    default_bands,
    error_maps,
    false_colour,
    inset_geometry,
    inset_panel,
    per_band_psnr_figure,
    spectral_difference_figure,
    stretch_limits,
    write_preview,
)
from .html import REPORT_NAME, build_report, csv_to_html, markdown_to_html, metrics_table

__all__ = [
    "INSET_COLOUR",
    "REPORT_NAME",
    "MissingReportDependencyError",
    "build_report",
    "comparison_figure",
    "csv_to_html",
    "default_bands",
    "error_maps",
    "false_colour",
    "inset_geometry",
    "inset_panel",
    "markdown_to_html",
    "metrics_table",
    "per_band_psnr_figure",
    "spectral_difference_figure",
    "stretch_limits",
    "write_preview",
]
