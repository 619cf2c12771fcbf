"""Held-out tables for candidate default weights, and the issue's ship rule.

Reads the two held-out evaluations of a candidate (``held_out.sh`` writes both) and the
card of the default that ships now, then prints

- the ship rule: the candidate ships when the held-out mean improves and no case of
  either table, under either protocol, drops by more than 0.1 dB;
- both tables in Markdown for docs/training-log.md (the previous default, the candidate,
  the change, the authors' checkpoint, the gap to it, BM4D), and the gap counts;

and, with ``--extra-out``, writes the card fields for ``ras2s export --card-extra``: the
card's ``held_out_evaluation`` and ``held_out_whole_cubes`` with the candidate in the
``default`` columns, the shipped default's figures moved to
``previous_default_step<N>`` and older ``previous_default_*`` columns dropped, plus the
card's ``name``, ``machine``, ``data_notes`` and ``description`` copied unchanged (edit
those by hand: they describe the run in words).

    python training/default-run/held_out_tables.py --eval DIR --whole FILE.jsonl \
        --step 17100 [--card src/ras2s/weights_data/default.json] [--extra-out extra.json]

``DIR`` is the output folder of ``ras2s evaluate`` (its ``per_image.csv``: methods
``ras2s``, the paper's protocol, and ``ras2s-denoise``, as ``ras2s denoise`` runs);
``FILE.jsonl`` is the output of ``benchmarks/normalisation.py --hows none,clean``.
MPSNR in dB throughout. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from pathlib import Path

TOLERANCE_DB = 0.1
SAME_NOISY_DB = 0.006  # two-decimal card figures of the same noise draws
WITHIN_DB = 1.0
TEXT_FIELDS = ("name", "machine", "data_notes", "description")


def crop_scores(eval_dir: Path) -> dict[tuple[str, str, str], float]:
    """MPSNR by (image, case, method) from ``ras2s evaluate``'s per_image.csv."""
    with open(eval_dir / "per_image.csv", newline="") as handle:
        return {
            (row["image"], row["case"], row["method"]): float(row["psnr"])
            for row in csv.DictReader(handle)
        }


def whole_scores(jsonl: Path) -> dict[tuple[str, str], dict]:
    """Rows of benchmarks/normalisation.py by (cube, case)."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {(row["cube"], row["case"]): row for row in rows}


def means(rows: list[dict]) -> dict[str, float]:
    """Column means of a table's rows, rounded to 0.01 dB."""
    keys = [key for key in rows[0] if key not in ("cube", "case")]
    return {key: round(sum(row[key] for row in rows) / len(rows), 2) for key in keys}


def new_table(
    table: dict,
    cols: dict[str, tuple[str, str]],
    candidate: Callable[[dict], tuple[float, tuple[float, float]]],
) -> dict:
    """A card table with the candidate's scores in the ``cols["new"]`` columns.

    The shipped default's figures move to the ``cols["old"]`` columns and older
    ``previous_default_step*`` columns are dropped. ``candidate(row)`` gives the
    candidate's noisy MPSNR for the row's cube and case (it must match the card's: the
    same noise draws) and its (paper, as run) scores.
    """
    rows = []
    for row in table["rows"]:
        noisy, scores = candidate(row)
        if abs(noisy - row["noisy"]) > SAME_NOISY_DB:
            raise SystemExit(
                f"{row['cube']} {row['case']}: noisy {noisy:.2f} dB, the card "
                f"{row['noisy']}: other noise draws"
            )
        new = {k: v for k, v in row.items() if not k.startswith("previous_default_step")}
        for current, previous, score in zip(cols["new"], cols["old"], scores, strict=True):
            new[previous] = row[current]
            new[current] = round(score, 2)
        rows.append(new)
    return {**table, "rows": rows, "mean": means(rows)}


def pairs(row: dict, paper: str, run: str) -> str:
    """``paper / as run`` cell."""
    return f"{row[paper]:.2f} / {row[run]:.2f}"


def signed(a: float, b: float) -> str:
    """``a - b`` with its sign."""
    return f"{a - b:+.2f}"


def markdown(
    rows: list[dict], mean: dict, cols: dict[str, tuple[str, str]], old: int, new: int
) -> str:
    """One Markdown table; ``cols`` maps new/old/authors to (paper, as-run) keys."""
    (np_, nr), (op, or_), (ap, ar) = cols["new"], cols["old"], cols["authors"]
    bm4d = "bm4d" in rows[0]
    head = (
        f"| cube | case | noisy | step {old:,} (previous default): paper / as run "
        f"| **step {new:,}: paper / as run** | change: paper / as run "
        "| authors': paper / as run | gap to the authors': paper / as run |"
        + (" BM4D |" if bm4d else "")
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row, label, case in [(r, r["cube"], r["case"]) for r in rows] + [(mean, "**mean**", "")]:
        cells = [
            label,
            case,
            f"{row['noisy']:.2f}",
            pairs(row, op, or_),
            f"**{pairs(row, np_, nr)}**",
            f"{signed(row[np_], row[op])} / {signed(row[nr], row[or_])}",
            pairs(row, ap, ar),
            f"{signed(row[np_], row[ap])} / {signed(row[nr], row[ar])}",
        ]
        if bm4d:
            cells.append(f"{row['bm4d']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(name: str, rows: list[dict], mean: dict, cols: dict[str, tuple[str, str]]) -> bool:
    """Print the ship rule's checks for one table; True when it passes."""
    ok = True
    for protocol, index in (("paper", 0), ("as run", 1)):
        new, old, authors = (cols[k][index] for k in ("new", "old", "authors"))
        gain = mean[new] - mean[old]
        worst = min(rows, key=lambda r: r[new] - r[old])
        drop = worst[new] - worst[old]
        within = sum(r[new] >= r[authors] - WITHIN_DB for r in rows)
        passes = gain > 0 and drop >= -TOLERANCE_DB
        ok &= passes
        print(
            f"{name}, {protocol}: mean {mean[new]:.2f} ({gain:+.2f} dB), worst change "
            f"{drop:+.2f} ({worst['cube']} {worst['case']}), within {WITHIN_DB:g} dB of the "
            f"authors' on {within} of {len(rows)} (mean gap {mean[new] - mean[authors]:+.2f})"
            f" -> {'passes' if passes else 'FAILS'}"
        )
    return ok


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", type=Path, required=True, help="ras2s evaluate output folder")
    parser.add_argument("--whole", type=Path, required=True, help="normalisation.py JSONL")
    parser.add_argument("--step", type=int, required=True, help="the candidate's step")
    parser.add_argument("--card", type=Path, default=Path("src/ras2s/weights_data/default.json"))
    parser.add_argument("--extra-out", type=Path, help="write the --card-extra JSON here")
    args = parser.parse_args()

    card = json.loads(args.card.read_text())
    old = int(card["training"]["steps"])
    previous = f"previous_default_step{old}"
    crop_cols = {
        "new": ("default_paper_protocol", "default"),
        "old": (previous + "_paper_protocol", previous),
        "authors": ("official_paper_protocol", "official"),
    }
    whole_cols = {
        "new": ("default_paper_protocol", "default_as_shipped"),
        "old": (previous + "_paper_protocol", previous + "_as_shipped"),
        "authors": ("authors_paper_protocol", "authors_as_shipped"),
    }
    crop = crop_scores(args.eval)
    whole_found = whole_scores(args.whole)

    def crop_candidate(row: dict) -> tuple[float, tuple[float, float]]:
        key = (row["cube"], row["case"])
        return crop[(*key, "noisy")], (crop[(*key, "ras2s")], crop[(*key, "ras2s-denoise")])

    def whole_candidate(row: dict) -> tuple[float, tuple[float, float]]:
        found = whole_found[(row["cube"], row["case"])]
        return found["noisy"], (found["none"], found["clean"])

    crops = new_table(card["held_out_evaluation"], crop_cols, crop_candidate)
    whole = new_table(card["held_out_whole_cubes"], whole_cols, whole_candidate)

    ships = verdict("crops", crops["rows"], crops["mean"], crop_cols)
    ships &= verdict("whole cubes", whole["rows"], whole["mean"], whole_cols)
    rule = f"mean up, no case down more than {TOLERANCE_DB} dB"
    print(f"ship rule ({rule}): {'SHIP' if ships else 'do not ship'}")
    print()
    print(markdown(crops["rows"], crops["mean"], crop_cols, old, args.step))
    print()
    print(markdown(whole["rows"], whole["mean"], whole_cols, old, args.step))

    if args.extra_out:
        extra = {"held_out_evaluation": crops, "held_out_whole_cubes": whole}
        extra.update({key: card[key] for key in TEXT_FIELDS if key in card})
        args.extra_out.write_text(json.dumps(extra, indent=1) + "\n")
        print(f"\nwrote {args.extra_out}; edit {', '.join(TEXT_FIELDS)} by hand before export")


if __name__ == "__main__":
    main()
