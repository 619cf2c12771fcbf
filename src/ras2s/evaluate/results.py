"""What an evaluation writes: ``per_image.csv`` (resumable), ``results.json``, ``table.md``.

:class:`Recorder` holds the state of one run in its output folder (rows done, failures,
provenance) and writes the three files; :func:`render_table` lays out the means like
the paper's Table 2.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import json
import logging
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError, Ras2sError
from ..io import FolderLock, write_text_atomically
from .protocol import CROP_PRESETS, METRIC_CONVENTIONS, SEED_DERIVATION, Image

__all__ = ["CSV_COLUMNS", "Recorder", "Results", "render_table", "utc_now"]

logger = logging.getLogger("ras2s.evaluate")

CSV_COLUMNS: tuple[str, ...] = (
    "image",
    "case",
    "method",
    "psnr",
    "ssim_paper",
    "ssim_gaussian",
    "sam",
    "sam_excluded",
    "ergas",
    "seconds",
)
_METRICS = ("psnr", "ssim_paper", "ssim_gaussian", "sam", "sam_excluded", "ergas", "seconds")


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Results:
    """What :func:`evaluate` produced (also written to ``out_dir``).

    Attributes
    ----------
    out_dir : pathlib.Path
        Folder holding ``per_image.csv``, ``results.json`` and ``table.md``.
    rows : list of dict
        The rows of this evaluation (including ones done by an earlier run), CSV columns.
    failures : list of dict
        ``image``, ``case``, ``method`` (None when not specific), ``stage`` and ``error``.
    means : dict
        ``{(case, method): {metric: mean over images, "n": number of images}}``.
    table : str
        The Markdown of ``table.md``.
    provenance : dict
        The whole ``results.json``.
    """

    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    means: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    table: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def csv_path(self) -> Path:
        """``out_dir / "per_image.csv"``."""
        return self.out_dir / "per_image.csv"

    @property
    def json_path(self) -> Path:
        """``out_dir / "results.json"``."""
        return self.out_dir / "results.json"

    @property
    def table_path(self) -> Path:
        """``out_dir / "table.md"``."""
        return self.out_dir / "table.md"


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise InputError(
                f"{path}: columns {reader.fieldnames} are not those of ras2s evaluate "
                f"({', '.join(CSV_COLUMNS)}); use another output folder or --no-resume"
            )
        rows = []
        for raw in reader:
            if None in raw or any(v is None for v in raw.values()):
                logger.warning("%s: skipping a truncated row %s", path, raw)
                continue
            row: dict[str, Any] = {k: raw[k] for k in ("image", "case", "method")}
            try:
                for k in _METRICS:
                    row[k] = int(raw[k]) if k == "sam_excluded" else float(raw[k])
            except ValueError:
                logger.warning("%s: skipping a malformed row %s", path, raw)
                continue
            rows.append(row)
    return rows


def _ends_mid_line(path: Path) -> bool:
    """True when ``path`` is not empty and its last byte is not a newline (a torn row)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def _means(
    rows: list[dict[str, Any]], cases: Sequence[str], methods: Sequence[str]
) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for case in cases:
        for method in methods:
            sel = [r for r in rows if r["case"] == case and r["method"] == method]
            if not sel:
                continue
            entry: dict[str, float] = {"n": len(sel)}
            for k in _METRICS:
                entry[k] = float(np.mean([r[k] for r in sel]))
            out[(case, method)] = entry
    return out


_TABLE_COLUMNS = (
    ("psnr", "PSNR↑", 2, max),
    ("ssim_paper", "SSIM↑", 4, max),
    ("sam", "SAM↓", 4, min),
)


def render_table(
    means: Mapping[tuple[str, str], Mapping[str, float]],
    cases: Sequence[str],
    methods: Sequence[str],
    *,
    n_images: int | None = None,
    caption: str = "",
) -> str:
    """Markdown table of means in the paper's Table 2 layout.

    Rows: ``Noisy`` then each method; per case three columns, PSNR (dB), SSIM (paper
    convention) and SAM (radians). The best value of every column (highest PSNR and SSIM,
    lowest SAM, compared as printed; ties all bold; the Noisy row competes too) is bold.
    A mean over fewer images than ``n_images`` is marked ``*``.
    """
    rows = ["noisy", *[m for m in methods if m != "noisy"]]
    lines = []
    if caption:
        lines += [caption, ""]
    lines.append(
        "SSIM convention: `paper` (one whole-band SSIM per band, no window: the authors' "
        "test loop, as in the paper's tables). Gaussian-window SSIM (Wang et al. 2004) is "
        "in per_image.csv and results.json. PSNR in dB (data range 1), SAM in radians. "
        "Best value per column in bold."
    )
    lines.append("")
    header = ["Methods"] + [
        f"{case} {label}" for case in cases for _, label, _, _ in _TABLE_COLUMNS
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|" + "---:|" * (len(header) - 1))
    cells: dict[tuple[str, str, str], str] = {}
    best: dict[tuple[str, str], str] = {}
    partial = False
    for case in cases:
        for metric, _, digits, pick in _TABLE_COLUMNS:
            shown = {}
            for method in rows:
                entry = means.get((case, method))
                if entry is None or not math.isfinite(entry[metric]):
                    continue
                shown[method] = f"{entry[metric]:.{digits}f}"
            if shown:
                best[(case, metric)] = pick(shown.values(), key=float)
            for method, text in shown.items():
                mark = ""
                if n_images is not None and means[(case, method)]["n"] < n_images:
                    mark, partial = "*", True
                bold = text == best[(case, metric)]
                cells[(case, metric, method)] = (f"**{text}**" if bold else text) + mark
    for method in rows:
        label = "Noisy" if method == "noisy" else method
        values = [
            cells.get((case, metric, method), "–")
            for case in cases
            for metric, *_ in _TABLE_COLUMNS
        ]
        lines.append("| " + " | ".join([label, *values]) + " |")
    if partial:
        note = f"\\* mean over fewer than {n_images} images (see `failures` in results.json)."
        lines += ["", note]
    seconds = [
        (m, np.mean([means[(c, m)]["seconds"] for c in cases if (c, m) in means]))
        for m in rows[1:]
        if any((c, m) in means for c in cases)
    ]
    if seconds:
        timing = ", ".join(f"{m} {s:.3g} s" for m, s in seconds)
        lines += ["", f"Mean runtime per cube (method only): {timing}."]
    return "\n".join(lines) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _strict_json(value: Any) -> Any:
    """NaN and infinities -> None (null), so results.json is strict JSON."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def _versions() -> dict[str, str]:
    from .. import __version__

    found = {"ras2s": __version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    for name in ("torch", "scipy"):
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError:  # pragma: no cover - both are dependencies
            found[name] = "absent"
    return found


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch.get_num_threads()


def _load_previous(
    result: Results, settings: Mapping[str, Any], weights_info: Mapping[str, Any] | None
) -> dict:
    """``results.json`` of an earlier run, refused when made with other settings or weights."""
    if not result.json_path.exists():
        return {}
    try:
        previous = json.loads(result.json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out, old = result.out_dir, previous.get("settings", {})
    for name in ("seed", "crop", "bands"):
        if name in old and old[name] != settings[name]:
            raise InputError(
                f"{out} holds results made with {name}={old[name]!r}, not {settings[name]!r}; "
                "use another output folder or --no-resume"
            )
    old_weights, weights_info = previous.get("weights") or {}, weights_info or {}
    old_sha, weights_sha = old_weights.get("sha256"), weights_info.get("sha256")
    if old_sha and weights_sha and old_sha != weights_sha:
        raise InputError(
            f"{out} holds results made with other weights (sha256 {old_sha[:12]}...); "
            "use another output folder or --no-resume"
        )
    # results made before these were recorded: no band windows known, min-max normalisation
    implied = {"band_window": None, "normalise": "minmax"}
    for key, what in (("band_window", "band window"), ("normalise", "normalisation")):
        if old_sha and weights_sha and (key in old_weights or implied[key] is not None):
            old_value, value = old_weights.get(key, implied[key]), weights_info.get(key)
            if old_value != value:
                raise InputError(
                    f"{out} holds results made with {what} {old_value}, not {value}; "
                    "use another output folder or --no-resume"
                )
    return previous


class Recorder:
    """One evaluation run in its output folder: rows done, failures and provenance.

    Opening it reads an earlier run's ``per_image.csv`` and ``results.json`` (``resume``;
    refused when they were made with another seed, crop, band subset or weights) or
    removes them; every :meth:`add` appends one CSV row and flushes it to the disk
    (``fsync``); :meth:`save` rewrites ``results.json``; :meth:`finish` writes
    ``table.md`` and returns the :class:`Results`. The output folder is locked
    (``flock``) from opening to :meth:`finish` or :meth:`discard`: a second run on the
    same folder refuses with one line instead of appending to the same CSV.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        settings: dict[str, Any],
        cases: list[str],
        methods: list[str],
        images: list[Image],
        method_info: dict[str, Any],
        weights_info: dict[str, Any] | None,
        resume: bool,
        command: str | None,
    ) -> None:
        out = Path(out_dir)
        if (out.exists() or out.is_symlink()) and not out.is_dir():
            raise OutputError(f"{out}: exists and is not a folder; the output must be a folder")
        self._created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{out}: cannot create the output folder ({err.strerror})") from None
        self.result = Results(out_dir=out)
        self.settings, self.cases, self.methods = settings, cases, methods
        self.names = {i.name for i in images}
        self.method_info, self.weights_info = method_info, weights_info
        # one run per folder: a second one refuses rather than append to the same CSV
        self._lock = FolderLock(out, wait=False, what="another ras2s evaluate")
        try:
            self._start(resume, command)
        except BaseException:
            self._lock.release()
            raise

    def _start(self, resume: bool, command: str | None) -> None:
        """Read (``resume``) or remove an earlier run's files; open the CSV to append."""
        self._new = [
            p
            for p in (self.result.csv_path, self.result.json_path, self.result.table_path)
            if not p.exists()
        ]
        previous = _load_previous(self.result, self.settings, self.weights_info) if resume else {}
        if not resume:
            for path in (self.result.csv_path, self.result.json_path, self.result.table_path):
                if path.exists():
                    path.unlink()
        csv_path = self.result.csv_path
        self.rows = _read_rows(csv_path) if csv_path.exists() else []
        self.done = {(r["image"], r["case"], r["method"]) for r in self.rows}
        self.image_info: dict[str, Any] = dict(previous.get("images", {}))
        self.noise_info: dict[str, Any] = dict(previous.get("noise", {}))
        self.failures: list[dict[str, Any]] = []
        earlier = previous.get("runs")
        if earlier is None and previous.get("started"):  # written before the history existed
            earlier = [{k: previous.get(k) for k in ("started", "command", "finished")}]
        self.runs = [*(earlier or []), {"started": utc_now(), "command": command}]
        new_file = not csv_path.exists()
        torn = not new_file and _ends_mid_line(csv_path)
        self._handle = open(csv_path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._handle)
        if new_file:
            self._writer.writerow(CSV_COLUMNS)
        elif torn:  # a crash cut the last row: end it, so the next row starts on its own line
            self._handle.write("\r\n")
        self._sync()

    def _sync(self) -> None:
        """Flush the CSV to the disk: a row reported done survives a crash or power loss."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def pending(self, image: str) -> set[tuple[str, str]]:
        """The (case, method) pairs of ``image`` not yet in the CSV."""
        return {(c, m) for c in self.cases for m in self.methods if (image, c, m) not in self.done}

    def add(self, row: dict[str, Any]) -> None:
        """Append one scored row to the CSV (flushed at once)."""
        self._writer.writerow([_format(row[c]) for c in CSV_COLUMNS])
        self._sync()
        self.rows.append(row)
        self.done.add((row["image"], row["case"], row["method"]))

    def fail(
        self,
        image: Image,
        stage: str,
        err: BaseException,
        case: str | None = None,
        method: str | None = None,
    ) -> None:
        """Record a failure (the run goes on with the other work)."""
        text = str(err) if isinstance(err, Ras2sError) else f"{type(err).__name__}: {err}"
        self.failures.append(
            {
                "image": image.name,
                "path": str(image.path) if image.path else None,
                "case": case,
                "method": method,
                "stage": stage,
                "error": text,
            }
        )
        where = "/".join(x for x in (image.name, case, method) if x)
        logger.info("evaluate: %s failed at %s: %s", where, stage, text)

    def close(self) -> None:
        """Close the CSV file (the folder stays locked until :meth:`finish`)."""
        self._handle.close()

    def discard(self) -> None:
        """Remove what this run wrote (nothing scored): its new files, its new folder."""
        self.close()
        for path in self._new:
            path.unlink(missing_ok=True)
        if self._created and not any(self.result.out_dir.iterdir()):
            self.result.out_dir.rmdir()
        self._lock.release()

    def save(self, finished: str | None) -> None:
        """Rewrite ``results.json`` (``finished``: the end time, None while running)."""
        self.runs[-1]["finished"] = finished
        data = _strict_json({**self._provenance(finished), "runs": self.runs})
        text = json.dumps(data, indent=1, default=_json_default)
        write_text_atomically(self.result.json_path, text)
        self.result.provenance = data

    def _provenance(self, finished: str | None) -> dict[str, Any]:
        rows = [
            r
            for r in self.rows
            if r["image"] in self.names and r["case"] in self.cases and r["method"] in self.methods
        ]
        means = _means(rows, self.cases, self.methods)
        result = self.result
        result.rows, result.means, result.failures = rows, means, self.failures
        names = self.names
        return {
            "versions": _versions(),
            "platform": {
                "system": platform.platform(),
                "machine": platform.machine(),
                "processor": platform.processor(),
                "torch_threads": _torch_threads(),
            },
            "command": self.runs[-1]["command"],
            "started": self.runs[-1]["started"],
            "finished": finished,
            "settings": {
                **self.settings,
                "cases": self.cases,
                "methods": self.methods,
                "crop_presets": CROP_PRESETS,
                "seed_derivation": SEED_DERIVATION,
            },
            "metric_conventions": METRIC_CONVENTIONS,
            "weights": self.weights_info,
            "methods": self.method_info,
            "images": {n: self.image_info[n] for n in sorted(self.image_info) if n in names},
            "noise": {n: self.noise_info[n] for n in sorted(self.noise_info) if n in names},
            "rows": rows,
            "means": [{"case": c, "method": m, **v} for (c, m), v in means.items()],
            "failures": self.failures,
        }

    def finish(self) -> Results:
        """Write the final ``results.json`` and ``table.md``; the :class:`Results`."""
        self.save(utc_now())
        result, settings = self.result, self.settings
        n_images = len({r["image"] for r in result.rows if r["method"] == "noisy"})
        crop = settings["crop"]
        crop_text = "x".join(map(str, crop)) if crop else "none"
        bands_text = f", bands {settings['bands']}" if settings["bands"] is not None else ""
        weights_text = self.weights_info["name"] if self.weights_info else "-"
        caption = (
            f"Means over {n_images} image(s); centre crop {crop_text}{bands_text}; "
            f"seed {settings['seed']}; weights {weights_text}."
        )
        result.table = render_table(
            result.means, self.cases, self.methods, n_images=n_images, caption=caption
        )
        unscored = [f for f in self.failures if f["stage"] == "prepare"]
        if unscored:
            listed = "; ".join(f"{f['image']} ({f['error']})" for f in unscored)
            result.table += f"\nNot scored (see `failures` in results.json): {listed}\n"
        write_text_atomically(result.table_path, result.table)
        self._lock.release()
        return result
