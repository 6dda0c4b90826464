"""The challenge's official scoring of prediction CSVs against annotation CSVs (``empathy score``).

OMG-Empathy results are reported with the organisers' ``calculateCCC.py``; numbers from this project are only
comparable with published ones when they come out of the same maths. This module reproduces it:

* each CSV is read as float64 text, the column named exactly ``valence`` (the script indexes a pandas frame
  with ``"valence"``: ``Valence`` or `` valence`` is a ``KeyError`` there);
* per video: population means and standard deviations (numpy defaults), Pearson's rho as ``scipy.stats.pearsonr``
  computes it, with NaN (a constant series: scipy tests for *exactly* equal values) replaced by 0, and
  ``2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2)``. A constant prediction equal to a constant label therefore
  scores 0 (a float sum leaves a std of ~1e-17, rho is still NaN -> 0), or NaN when both stds are exactly 0;
* a series with NaN (an empty cell): pandas' mean/std skip it, ``pearsonr`` gives NaN, which becomes 0, so the
  clip scores 0.0 (it is scored, and named in :attr:`Report.problems`; it is not dropped);
* "personalized" track: mean over each subject's stories, then the mean of those; "generalized" track: mean
  over each story's subjects, then the mean of those (the script averages a subjects x stories matrix).

The script pairs the n-th annotation file with the n-th prediction file (both sorted by subject, then story),
stops on a length mismatch (an endless loop calling ``raw_input``) and on any file name that is not
``Subject_<s>_Story_<k>.<ext>``. :func:`score_dirs` pairs by name instead, so it still scores what it can, and
lists every input on which the official script would fail or silently pair the wrong files
(:attr:`Report.problems`).
"""

from __future__ import annotations

import csv
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)

OFFICIAL_HEADER = "valence"
_NAME = re.compile(r"^Subject_(\d+)_Story_(\d+)$")


class ScoreInputError(ValueError):
    """A CSV cannot be read the way the official script reads it."""


def official_ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """CCC of one video exactly as ``calculateCCC.py`` computes it (NaN when both series are exactly constant)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"official_ccc needs two 1-D series of one length, got {t.shape} and {p.shape}")
    if t.size < 2:
        raise ValueError("official_ccc needs at least two frames (scipy's pearsonr does)")
    if np.isnan(t).any() or np.isnan(p).any():
        # pearsonr of a series with NaN is NaN -> rho 0 in the script, while pandas' mean/std skip the NaN
        # (the script hands numpy pandas Series): 2 * 0 * ... / finite = 0.0 whatever the other frames say.
        sp, st = float(np.nanstd(p)), float(np.nanstd(t))
        denom = sp**2 + st**2 + (float(np.nanmean(p)) - float(np.nanmean(t))) ** 2
        return 0.0 if denom > 0 else float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; the script ignores it too
        rho = float(stats.pearsonr(p, t)[0])
    if math.isnan(rho):
        rho = 0.0
    sp, st = float(np.std(p)), float(np.std(t))
    denom = sp**2 + st**2 + (float(np.mean(p)) - float(np.mean(t))) ** 2
    if denom == 0.0:
        return float("nan")  # 0 / 0: numpy gives nan (with a warning) in the script
    return 2.0 * rho * st * sp / denom


def read_valence_csv(path: Path | str) -> np.ndarray:
    """The ``valence`` column of a CSV as float64, read as the official script reads it (header exactly ``valence``)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ScoreInputError(f"{path.name}: empty file (the official script needs a 'valence' header)")
    header = rows[0]
    if OFFICIAL_HEADER not in header:
        near = [c for c in header if c.strip().lower() == OFFICIAL_HEADER]
        hint = f" ({near[0]!r} is not 'valence': the official script is case- and space-sensitive)" if near else ""
        raise ScoreInputError(f"{path.name}: header {header!r} has no column named exactly 'valence'{hint}")
    column = header.index(OFFICIAL_HEADER)
    values = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue  # pandas skips blank lines
        try:
            cell = row[column].strip()
            values.append(float(cell) if cell else math.nan)  # pandas reads an empty cell as NaN
        except (ValueError, IndexError) as exc:
            raise ScoreInputError(f"{path.name} line {number}: {row!r} has no number in the 'valence' column") from exc
    array = np.asarray(values, dtype=np.float64)
    if np.isinf(array).any():
        raise ScoreInputError(f"{path.name}: infinite 'valence' values (the script's means and CCC become inf/nan)")
    return array


def parse_name(name: str) -> tuple[int, int] | None:
    """(subject, story) of ``Subject_<s>_Story_<k>.<ext>``; None for any other name."""
    match = _NAME.match(name.split(".")[0])
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass
class ScoreGrid:
    """Per-video CCCs keyed by (subject, story): the grid both the scorer and ``empathy evaluate`` fill."""

    scores: dict[tuple[int, int], float] = field(default_factory=dict)

    @property
    def subjects(self) -> list[int]:
        return sorted({s for s, _ in self.scores})

    @property
    def stories(self) -> list[int]:
        return sorted({k for _, k in self.scores})


@dataclass
class Report(ScoreGrid):
    """The grid, the two tracks' means, and what would stop the official script."""

    problems: list[str] = field(default_factory=list)

    def personalized(self) -> dict[int, float]:
        """Per subject: the mean CCC over that subject's stories."""
        return {s: float(np.mean([v for (a, _), v in self.scores.items() if a == s])) for s in self.subjects}

    def generalized(self) -> dict[int, float]:
        """Per story: the mean CCC over that story's subjects."""
        return {k: float(np.mean([v for (_, b), v in self.scores.items() if b == k])) for k in self.stories}

    @property
    def personalized_mean(self) -> float:
        values = list(self.personalized().values())
        return float(np.mean(values)) if values else float("nan")

    @property
    def generalized_mean(self) -> float:
        values = list(self.generalized().values())
        return float(np.mean(values)) if values else float("nan")

    def render(self) -> str:
        """The per-video table and both tracks, 4 decimals (the script prints 2)."""
        lines = ["CCC per video (official calculateCCC.py maths)"]
        lines.append("Subject | " + " | ".join(f"Story {k}" for k in self.stories))
        for s in self.subjects:
            cells = [_fmt(self.scores.get((s, k))) for k in self.stories]
            lines.append(f"Subject {s} | " + " | ".join(cells))
        lines.append("Personalized track (mean over each subject's stories)")
        lines += [f"  Subject {s} | {_fmt(v)}" for s, v in self.personalized().items()]
        lines.append(f"  Mean | {_fmt(self.personalized_mean)}")
        lines.append("Generalized track (mean over each story's subjects)")
        lines += [f"  Story {k} | {_fmt(v)}" for k, v in self.generalized().items()]
        lines.append(f"  Mean | {_fmt(self.generalized_mean)}")
        if self.problems:
            lines.append(f"The official script would fail or mis-pair files on these inputs ({len(self.problems)}):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("The official script would run on these inputs unchanged.")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _csv_files(folder: Path, role: str, problems: list[str]) -> dict[tuple[int, int], Path]:
    """``Subject_<s>_Story_<k>`` files of ``folder``; other entries are problems (the script parses every name)."""
    found: dict[tuple[int, int], Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name == ".DS_Store":
            continue  # the one name the script skips
        key = parse_name(entry.name)
        if key is None or not entry.is_file():
            problems.append(f"{role} folder holds {entry.name!r}: not a Subject_<s>_Story_<k> file, the script "
                            "stops on its name")
            continue
        if key in found:
            problems.append(f"{role} folder holds two files for Subject_{key[0]}_Story_{key[1]}: {found[key].name} "
                            f"and {entry.name}")
            continue
        found[key] = entry
    return found


def score_dirs(pred_dir: Path | str, gt_dir: Path | str) -> Report:
    """Score every annotation of ``gt_dir`` against the prediction of the same name in ``pred_dir``.

    A clip without a prediction, or whose prediction has another length or an unreadable column, is not
    scored (and is a problem: the script would stop or pair other files); the means cover the scored clips.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
    report = Report()
    truths = _csv_files(gt_dir, "annotation", report.problems)
    preds = _csv_files(pred_dir, "prediction", report.problems)
    if not truths:
        raise ScoreInputError(f"no Subject_<s>_Story_<k>.csv annotation in {gt_dir}")
    for key in sorted(set(preds) - set(truths)):
        report.problems.append(f"prediction {preds[key].name} has no annotation: the script pairs files by position, "
                               "so every later file would be scored against another clip's annotation")
    for key, truth_path in sorted(truths.items()):
        name = truth_path.name
        if key not in preds:
            report.problems.append(f"no prediction for {name}: the script pairs the n-th files, so this shifts or "
                                   "stops the pairing")
            continue
        try:
            truth, pred = read_valence_csv(truth_path), read_valence_csv(preds[key])
        except ScoreInputError as exc:
            report.problems.append(str(exc))
            continue
        if truth.size != pred.size:
            report.problems.append(f"{name}: {pred.size} predicted rows for {truth.size} annotated frames (the script "
                                   "loops forever on a length mismatch)")
            continue
        score = official_ccc(truth, pred)
        gaps = {role: int(np.isnan(series).sum()) for role, series in (("prediction", pred), ("annotation", truth))}
        for role, count in gaps.items():
            if count:
                report.problems.append(f"{name}: the {role} has {count} empty or NaN 'valence' values: the script "
                                       "runs, but scipy's pearsonr gives nan, which it turns into 0, so the clip "
                                       f"scores {score:.1f} (as here) whatever its other frames say")
        if math.isnan(score):
            report.problems.append(f"{name}: prediction and annotation are both exactly constant: the script's CCC "
                                   "is 0/0 = nan, and every mean containing it is nan")
        report.scores[key] = score
    if report.scores and len({k for _, k in report.scores}) * len({s for s, _ in report.scores}) != len(report.scores):
        report.problems.append("not every subject has every story: the script's subjects x stories matrix is ragged "
                               "and its means fail")
    return report
