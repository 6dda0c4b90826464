"""``empathy score PRED_DIR GT_DIR``: the challenge's scoring of a folder of prediction CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.scoring import ScoreInputError, score_dirs


def main(argv: list[str] | None = None) -> int:
    """``empathy score PRED_DIR GT_DIR``: 0 when the official script would run unchanged, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="empathy score",
        description="Score prediction CSVs against annotation CSVs with the challenge's calculateCCC.py maths.",
    )
    parser.add_argument("pred_dir", type=Path, help="folder of Subject_<s>_Story_<k>.csv predictions")
    parser.add_argument("gt_dir", type=Path, help="folder of the annotation CSVs (header 'valence')")
    args = parser.parse_args(argv)
    try:
        report = score_dirs(args.pred_dir, args.gt_dir)
    except (FileNotFoundError, ScoreInputError) as exc:
        print(f"empathy score: {exc}")
        return 2
    print(report.render())
    return 1 if report.problems else 0
