"""Markdown table of convergence.json runs (benchmarks/convergence.py), for docs/TRAINING.md.

    .venv/bin/python benchmarks/convergence_table.py runs/old_hdtf runs/new_hdtf [--every 500]
    .venv/bin/python benchmarks/convergence_table.py docs/convergence/baseline_hdtf.json ...

One row per measured iteration and run; then, per run, the mean of the last three rows, since
one checkpoint's mouth correlation over ~40 held-out frames swings by +-0.3 from one row to the next.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [("it", "iteration", "{}"), ("wall s", "wall_s", "{:.0f}"),
           ("mouth corr. swap", "mouth_correlation_swap", "{:.2f}"),
           ("(rebuild A)", "mouth_correlation_rebuild", "{:.2f}"),
           ("(control / resolution)", ("mouth_correlation_control", "mouth_correlation_resolution"), "{:.2f}"),
           ("landmark err. / IOD", "landmark_error_swap", "{:.3f}"),
           ("(constant / varying)", ("landmark_offset_swap", "landmark_tracking_swap"), "{:.3f}"),
           ("head turn swap (source)", ("head_turn_swap", "head_turn_source"), "{:+.3f}"),
           ("dist. to B swap", "identity_distance_target_swap", "{:.3f}"),
           ("(control)", "identity_distance_target_control", "{:.3f}"),
           ("retrieval", "identity_retrieval_swap", "{:.2f}"),
           ("B rebuilt: dist. to B", "identity_distance_b_rebuild", "{:.3f}"),
           ("detail swap (resolution)", ("detail_swap", "detail_resolution"), "{:.2f}"),
           ("SSIM A / B", ("ssim_a", "ssim_b"), "{:.3f}")]


def cell(row: dict, key, fmt: str) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    parts = [fmt.format(row[k]) if row.get(k) is not None else "-" for k in keys]
    return " / ".join(parts)


def mean_row(rows: list[dict]) -> dict:
    out: dict = {"iteration": f"mean {rows[0]['iteration']}-{rows[-1]['iteration']}", "wall_s": rows[-1]["wall_s"]}
    for k in rows[-1]:
        values = [r.get(k) for r in rows]
        if k not in out and all(isinstance(v, (int, float)) for v in values):
            out[k] = sum(values) / len(values)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--every", type=int, default=None, help="only iterations divisible by this")
    args = p.parse_args()
    print("| run | " + " | ".join(name for name, _, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for run in args.runs:
        # A run folder, or a convergence JSON copied out of one (docs/convergence/NAME.json).
        copied = run.suffix == ".json"
        rows = json.loads((run if copied else run / "convergence.json").read_text())["rows"]
        name = run.stem if copied else run.name
        shown = [r for r in rows if not args.every or r["iteration"] % args.every == 0]
        extra = [mean_row(rows[-3:])] if len(rows) >= 3 else []
        for r in shown + extra:
            print(f"| {name} | " + " | ".join(cell(r, key, fmt) for _, key, fmt in COLUMNS) + " |")


if __name__ == "__main__":
    main()
