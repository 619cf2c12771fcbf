"""A self-contained HTML report: metric tables, figures (embedded PNG) and settings."""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ras2s.errors import InputError
from ras2s.io import write_text_atomically

from . import figures

__all__ = [
    "REPORT_NAME",
    "build_report",
    "csv_to_html",
    "figures_html",
    "markdown_to_html",
    "metrics_table",
    "png_tag",
    "table_html",
    "write_page",
]

#: File name of the HTML page inside the output folder.
REPORT_NAME = "report.html"
_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


# ------------------------------------------------------------------ text to HTML
def _inline(text: str) -> str:
    """Escape, then render ``code`` and **bold** (the only inline Markdown kept)."""
    out = html.escape(text.strip(), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _align(spec: str) -> str:
    s = spec.strip()
    if s.startswith(":") and s.endswith(":"):
        return "center"
    if s.endswith(":"):
        return "right"
    return "left" if s.startswith(":") else ""


def table_html(header: list[str], aligns: list[str], rows: list[list[str]]) -> str:
    """An HTML table; ``aligns`` holds one CSS text-align (or "") per column."""

    def cell(tag: str, text: str, align: str) -> str:
        style = f' style="text-align:{align}"' if align else ""
        return f"<{tag}{style}>{_inline(text)}</{tag}>"

    n = len(header)
    aligns = (aligns + [""] * n)[:n]
    head = "".join(cell("th", h, a) for h, a in zip(header, aligns, strict=True))
    body = []
    for row in rows:
        row = (row + [""] * n)[:n]
        body.append(
            "<tr>" + "".join(cell("td", c, a) for c, a in zip(row, aligns, strict=True)) + "</tr>"
        )
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + ("\n</tbody>\n</table>")
    )


def markdown_to_html(text: str) -> str:
    r"""Render the simple Markdown of an evaluate ``table.md`` to HTML.

    Pipe tables (a header row, a ``|---|:---:|`` separator row with optional alignment
    colons, then body rows) become ``<table>``; ``#`` headings become ``<h3>``-``<h5>``;
    other non-empty lines become paragraphs. Inline: ``code`` and **bold**; everything
    else is escaped.

    Parameters
    ----------
    text : str
        Markdown source.

    Returns
    -------
    str
        HTML fragment.

    Examples
    --------
    >>> print(markdown_to_html("| a | b |\n|---|--:|\n| 1 | 2 |"))
    <table>
    <thead><tr><th>a</th><th style="text-align:right">b</th></tr></thead>
    <tbody>
    <tr><td>1</td><td style="text-align:right">2</td></tr>
    </tbody>
    </table>
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]):
            header = _cells(line)
            aligns = [_align(s) for s in _cells(lines[i + 1])]
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append(table_html(header, aligns, rows))
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            level = min(len(heading.group(1)) + 2, 6)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped:
            out.append(f"<p>{_inline(stripped)}</p>")
        i += 1
    return "\n".join(out)


def csv_to_html(text: str) -> str:
    """Render CSV text (first row = header) as an HTML table.

    Parameters
    ----------
    text : str
        CSV source.

    Returns
    -------
    str
        HTML fragment (empty string for empty input).
    """
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows:
        return ""
    return table_html(rows[0], [""] * len(rows[0]), rows[1:])


# ---------------------------------------------------------------------- metrics
def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def metrics_table(clean: Any, cubes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """MPSNR, MSSIM (paper and gaussian conventions) and SAM of every cube.

    Parameters
    ----------
    clean : array_like, shape (bands, H, W)
        Reference, in the same unit as ``cubes`` (normalised to [0, 1]: data range 1).
    cubes : mapping of str to array_like
        Name -> cube.

    Returns
    -------
    list of dict
        One row per cube: ``method``, ``mpsnr``, ``mssim_paper``, ``mssim_gaussian``,
        ``sam_rad``; a metric that is undefined for the cube (too small for SSIM, ...)
        is NaN.
    """
    from ras2s.metrics import score

    rows = []
    for name, cube in cubes.items():
        scores = score(cube, clean)
        rows.append(
            {
                "method": name,
                "mpsnr": scores["psnr"],
                "mssim_paper": scores["ssim_paper"],
                "mssim_gaussian": scores["ssim_gaussian"],
                "sam_rad": scores["sam"],
            }
        )
    return rows


def _metrics_html(rows: list[dict[str, Any]]) -> str:
    header = ["method", "MPSNR (dB)", "MSSIM paper", "MSSIM gaussian", "SAM (rad)"]
    body = [
        [
            r["method"],
            _fmt(r["mpsnr"], 2),
            _fmt(r["mssim_paper"], 4),
            _fmt(r["mssim_gaussian"], 4),
            _fmt(r["sam_rad"], 4),
        ]
        for r in rows
    ]
    return table_html(header, ["", "right", "right", "right", "right"], body)


# ----------------------------------------------------------------------- report
def png_tag(path: Path, alt: str) -> str:
    """An ``<img>`` embedding the PNG file ``path`` as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def figures_html(folder: Path, made: Sequence[tuple[str, str]]) -> str:
    """``<figure>`` elements embedding each ``(png name in folder, caption)``."""
    return "\n".join(
        f"<figure>{png_tag(folder / name, name)}<figcaption>{html.escape(caption)}"
        "</figcaption></figure>"
        for name, caption in made
    )


def write_page(path: Path, title: str, sections: Sequence[str]) -> Path:
    """Write a self-contained HTML page (the report style) atomically; return ``path``."""
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )
    return write_text_atomically(path, page)


def _settings_html(settings: Mapping[str, Any]) -> str:
    rows = [[str(k), json.dumps(v) if not isinstance(v, str) else v] for k, v in settings.items()]
    return table_html(["setting", "value"], ["", ""], rows)


def _default_pixels(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    h, w = shape[1], shape[2]
    return [(h // 2, w // 2), (h // 4, w // 4), ((3 * h) // 4, (3 * w) // 4)]


def _default_inset(shape: tuple[int, ...]) -> tuple[int, int, int]:
    h, w = shape[1], shape[2]
    size = max(2, min(h, w) // 5)
    return (h // 4, w // 4, size)


def build_report(
    out_dir: str | os.PathLike,
    *,
    results_dir: str | os.PathLike | None = None,
    clean: Any = None,
    noisy: Any = None,
    results: Mapping[str, Any] | None = None,
    bands: Sequence[int] | None = None,
    inset: tuple[int, int, int] | None = None,
    pixels: Sequence[Sequence[int]] | None = None,
    settings: Mapping[str, Any] | None = None,
    title: str = "ras2s denoising report",
) -> Path:
    """Write a self-contained HTML report (and its PNG figures) into ``out_dir``.

    Two sources, either or both:

    - cubes: ``clean`` (reference), ``noisy`` and ``results`` (name -> denoised cube),
      all ``(bands, H, W)`` in one unit (normalised to [0, 1] for paper-comparable
      numbers). The report then holds a metric table (MPSNR, MSSIM paper and gaussian,
      SAM), and the figures ``comparison.png`` (false colour with the inset),
      ``error_maps.png``, ``spectral_difference.png`` and ``per_band_psnr.png``,
      written in ``out_dir`` and embedded as base64 PNG.
    - ``results_dir``: a ``ras2s evaluate`` output folder; its ``table.md`` (rendered
      to HTML), ``per_image.csv`` (as a table) and ``results.json`` (shown verbatim)
      are included when present.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created if missing); existing files of the same names are
        replaced.
    results_dir : path-like, optional
        An evaluate results folder.
    clean, noisy : array_like, optional
        Reference and noisy cube; ``clean`` is needed with ``noisy``/``results``.
    results : mapping of str to array_like, optional
        Denoised cubes by method name.
    bands : three ints, optional
        False-colour (red, green, blue) bands (default
        :func:`~ras2s.report.figures.default_bands`).
    inset : (y0, x0, size), optional
        Square magnified in the comparison (default: a fifth of the image side at a
        quarter of its height and width).
    pixels : sequence of (y, x), optional
        Pixels of the spectral-difference figure (default: centre and the two
        quarter points of the diagonal).
    settings : mapping, optional
        Extra key -> value rows for the settings table (files, noise, ...).
    title : str
        Page title.

    Returns
    -------
    pathlib.Path
        The HTML file, ``out_dir / "report.html"``.

    Raises
    ------
    InputError
        Nothing to report, ``noisy``/``results`` without ``clean``, mismatched shapes,
        a results folder without any of the expected files, bad inset/pixels/bands.
    """
    out = Path(out_dir)
    if clean is None and (noisy is not None or results):
        raise InputError("a report of denoised cubes needs the clean (reference) cube")
    if clean is None and results_dir is None:
        raise InputError("nothing to report: give cubes (clean, noisy, results) or results_dir")
    info: dict[str, Any] = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    }
    tables_html = _results_dir_html(Path(results_dir)) if results_dir is not None else ""
    sections: list[str] = []
    if clean is not None:
        cubes = {"noisy": noisy} if noisy is not None else {}
        cubes.update(results or {})
        sections += _cube_sections(out, clean, cubes, bands, inset, pixels, info)
    out.mkdir(parents=True, exist_ok=True)
    if tables_html:
        sections.append(tables_html)
    info.update(dict(settings or {}))
    sections.append("<h2>Settings</h2>\n" + _settings_html(info))
    return write_page(out / REPORT_NAME, title, sections)


def _cube_sections(
    out: Path,
    clean: Any,
    cubes: Mapping[str, Any],
    bands: Sequence[int] | None,
    inset: tuple[int, int, int] | None,
    pixels: Sequence[Sequence[int]] | None,
    info: dict[str, Any],
) -> list[str]:
    """Check the cubes, write the figures into ``out``; the metric and figure sections."""
    ref = figures.as_cube(clean, "clean")
    cubes = figures.same_shape(ref, cubes)
    idx = figures.check_rgb(bands, ref.shape[0])
    box = tuple(inset) if inset is not None else _default_inset(ref.shape)
    figures.inset_geometry(ref.shape[1:], box)  # validate before any work
    pts = figures.check_pixels(pixels or _default_pixels(ref.shape), ref.shape)
    info.update(
        {
            "shape (bands, H, W)": list(ref.shape),
            "false-colour bands (r, g, b)": list(idx),
            "stretch": "2-98 % percentiles of the clean cube",
            "inset (y0, x0, size)": list(box),
            "pixels (y, x)": [list(p) for p in pts],
            "metrics": "data range 1; MSSIM paper = whole-band SSIM of the "
            "authors' test loop, gaussian = Wang et al. 2004; SAM in radians",
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    if cubes:
        sections.append("<h2>Metrics</h2>\n" + _metrics_html(metrics_table(ref, cubes)))
    others = {k: v for k, v in cubes.items() if k != "noisy"}
    figures.comparison_figure(
        ref, cubes.get("noisy"), others, inset=box, bands=idx, path=out / "comparison.png"
    )
    made = [
        (
            "comparison.png",
            "False colour: clean, noisy and every method "
            "(PSNR in the titles), with the same magnified inset",
        )
    ]
    if cubes:
        figures.error_maps(ref, cubes, path=out / "error_maps.png")
        made.append(("error_maps.png", "Mean absolute error over bands (one colour scale)"))
        figures.spectral_difference_figure(ref, cubes, pts, path=out / "spectral_difference.png")
        made.append(("spectral_difference.png", "Absolute error per band at chosen pixels"))
        figures.per_band_psnr_figure(ref, cubes, path=out / "per_band_psnr.png")
        made.append(("per_band_psnr.png", "PSNR of every band"))
    return [*sections, "<h2>Figures</h2>\n" + figures_html(out, made)]


def _results_dir_html(folder: Path) -> str:
    if not folder.is_dir():
        raise InputError(f"{folder}: results folder does not exist")
    parts = []
    table_md = folder / "table.md"
    per_image = folder / "per_image.csv"
    results_json = folder / "results.json"
    if table_md.is_file():
        parts.append(
            f"<h3>{table_md.name}</h3>\n" + markdown_to_html(table_md.read_text(encoding="utf-8"))
        )
    if per_image.is_file():
        parts.append(
            f"<h3>{per_image.name}</h3>\n" + csv_to_html(per_image.read_text(encoding="utf-8"))
        )
    if results_json.is_file():
        text = results_json.read_text(encoding="utf-8")
        try:
            text = json.dumps(json.loads(text), indent=2)
        except json.JSONDecodeError as err:
            raise InputError(f"{results_json}: not valid JSON ({err})") from err
        parts.append(
            f"<details><summary>{results_json.name}</summary>\n<pre>"
            f"{html.escape(text)}</pre></details>"
        )
    if not parts:
        raise InputError(
            f"{folder}: holds none of table.md, per_image.csv, results.json (is it a "
            "ras2s evaluate output folder?)"
        )
    return f"<h2>Evaluation results ({html.escape(str(folder))})</h2>\n" + "\n".join(parts)
