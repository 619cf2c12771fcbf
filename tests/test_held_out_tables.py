"""training/default-run/held_out_tables.py: the ship rule and the card's column shift."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "default-run" / "held_out_tables.py"
CASES = [("cube_a", "noniid"), ("cube_a", "mixture"), ("cube_b", "iid30")]


def card(tmp_path: Path) -> Path:
    """A card whose default (step 100) scores 30 dB everywhere, the authors' 32."""
    crops = [
        {
            "cube": cube,
            "case": case,
            "noisy": 15.0,
            "default": 30.0,
            "default_paper_protocol": 30.0,
            "official": 32.0,
            "official_paper_protocol": 32.0,
            "bm4d": 25.0,
            "previous_default_step50": 29.0,
            "previous_default_step50_paper_protocol": 29.0,
        }
        for cube, case in CASES
    ]
    whole = [
        {
            "cube": cube,
            "case": case,
            "noisy": 16.0,
            "default_paper_protocol": 31.0,
            "default_as_shipped": 31.0,
            "authors_paper_protocol": 33.0,
            "authors_as_shipped": 33.0,
        }
        for cube, case in CASES
    ]
    content = {
        "training": {"steps": 100},
        "name": "default",
        "description": "words",
        "held_out_evaluation": {"command": "c", "rows": crops, "mean": {}},
        "held_out_whole_cubes": {"command": "w", "rows": whole, "mean": {}},
    }
    path = tmp_path / "card.json"
    path.write_text(json.dumps(content))
    return path


def candidate(tmp_path: Path, crop_gain: list[float], whole_gain: float) -> tuple[Path, Path]:
    """Evaluation outputs of a candidate: crop scores 30 + gain, whole cubes 31 + gain."""
    crops = tmp_path / "crops"
    crops.mkdir()
    with open(crops / "per_image.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "case", "method", "psnr"])
        for (cube, case), gain in zip(CASES, crop_gain, strict=True):
            writer.writerow([cube, case, "noisy", 15.001])
            writer.writerow([cube, case, "ras2s", 30.0 + gain])
            writer.writerow([cube, case, "ras2s-denoise", 30.0 + gain])
    whole = tmp_path / "whole.jsonl"
    lines = [
        {"cube": c, "case": k, "noisy": 16.0, "none": 31 + whole_gain, "clean": 31 + whole_gain}
        for c, k in CASES
    ]
    whole.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return crops, whole


def run(tmp_path: Path, crop_gain: list[float], whole_gain: float) -> tuple[str, dict]:
    crops, whole = candidate(tmp_path, crop_gain, whole_gain)
    extra = tmp_path / "extra.json"
    args = ["--eval", crops, "--whole", whole, "--step", "200", "--card", card(tmp_path)]
    result = subprocess.run(
        [sys.executable, SCRIPT, *map(str, args), "--extra-out", str(extra)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout, json.loads(extra.read_text())


def test_a_better_candidate_ships_and_the_columns_shift(tmp_path: Path) -> None:
    out, extra = run(tmp_path, [0.5, 0.3, -0.05], 0.2)
    assert "ship rule (mean up, no case down more than 0.1 dB): SHIP" in out
    assert "| **step 200: paper / as run** |" in out
    row = extra["held_out_evaluation"]["rows"][0]
    assert row["default"] == 30.5 and row["default_paper_protocol"] == 30.5
    assert row["previous_default_step100"] == 30.0
    assert not any(key.startswith("previous_default_step50") for key in row)
    assert extra["held_out_evaluation"]["mean"]["default"] == round((30.5 + 30.3 + 29.95) / 3, 2)
    whole = extra["held_out_whole_cubes"]["rows"][0]
    assert whole["default_as_shipped"] == 31.2
    assert whole["previous_default_step100_as_shipped"] == 31.0
    assert extra["description"] == "words"


def test_a_case_that_drops_more_than_the_tolerance_blocks_shipping(tmp_path: Path) -> None:
    out, _ = run(tmp_path, [1.0, 1.0, -0.2], 0.2)
    assert "crops, paper: mean" in out and "FAILS" in out
    assert out.count("passes") == 2  # the whole-cube table still passes
    assert "do not ship" in out
