"""``empathy score`` against the official calculateCCC.py maths, including its edge behaviour."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr

from cli.main import main as empathy
from shared.ccc import ccc
from shared.data import write_labels
from shared.scoring import official_ccc, read_valence_csv, score_dirs
from tests import REPO


def script_ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """calculateCCC.py's ccc(), line for line (numpy population stats, pearsonr, NaN rho -> 0)."""
    true_mean, pred_mean = np.mean(y_true), np.mean(y_pred)
    rho, _ = pearsonr(y_pred, y_true)
    if math.isnan(rho):
        rho = 0
    std_predictions, std_gt = np.std(y_pred), np.std(y_true)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(2 * rho * std_gt * std_predictions
                     / (std_predictions**2 + std_gt**2 + (pred_mean - true_mean) ** 2))


def write(path: Path, values: np.ndarray, header: str = "valence") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{v:.6f}\n" for v in values), encoding="utf-8")


def curves(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.clip(np.cumsum(rng.normal(0, 0.05, n)), -1, 1)
    pred = np.clip(0.6 * truth + rng.normal(0, 0.2, n) + 0.1, -1, 1)
    return truth, pred


def test_official_ccc_matches_the_script_on_random_curves() -> None:
    for seed in range(20):
        truth, pred = curves(seed)
        assert official_ccc(truth, pred) == pytest.approx(script_ccc(truth, pred), abs=1e-10)
        assert official_ccc(truth, pred) == pytest.approx(ccc(truth, pred), abs=1e-4)


def test_constant_prediction_equal_to_constant_label_scores_zero_not_one() -> None:
    truth = np.full(300, 0.1)  # summing 0.1s leaves a std of ~1e-17: rho is still NaN for scipy -> 0
    assert float(np.std(truth)) > 0
    assert official_ccc(truth, truth.copy()) == 0.0 == script_ccc(truth, truth.copy())
    exact = np.full(300, 0.5)  # std exactly 0: the script divides 0 by 0
    assert math.isnan(official_ccc(exact, exact.copy())) and math.isnan(script_ccc(exact, exact.copy()))
    truth, _ = curves(1)
    assert official_ccc(truth, np.full(truth.size, 0.2)) == 0.0  # a constant prediction carries no correlation


def test_score_dirs_personalized_and_generalized_means_match_the_script(tmp_path: Path, capsys) -> None:
    matrix = {}
    for subject in (1, 2, 10):
        for story in (1, 2, 8):
            truth, pred = curves(subject * 100 + story)
            write(tmp_path / "gt" / f"Subject_{subject}_Story_{story}.csv", truth)
            write(tmp_path / "pred" / f"Subject_{subject}_Story_{story}.csv", pred)
            # what the script reads back: the 6-decimal text
            matrix[(subject, story)] = script_ccc(np.round(truth, 6), np.round(pred, 6))
    report = score_dirs(tmp_path / "pred", tmp_path / "gt")
    assert report.problems == []
    grid = np.array([[matrix[(s, k)] for k in (1, 2, 8)] for s in (1, 2, 10)])
    for (s, k), value in matrix.items():
        assert report.scores[(s, k)] == pytest.approx(value, abs=1e-4)
    assert list(report.personalized().values()) == pytest.approx(list(grid.mean(axis=1)), abs=1e-4)
    assert list(report.generalized().values()) == pytest.approx(list(grid.mean(axis=0)), abs=1e-4)
    assert report.personalized_mean == pytest.approx(grid.mean(axis=1).mean(), abs=1e-4)
    assert report.generalized_mean == pytest.approx(grid.mean(axis=0).mean(), abs=1e-4)
    assert empathy(["score", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 0
    out = capsys.readouterr().out
    assert f"Mean | {grid.mean():.4f}" in out and "would run on these inputs unchanged" in out


def test_inputs_the_official_script_fails_on_are_reported(tmp_path: Path, capsys) -> None:
    truth, pred = curves(3)
    for story in (1, 2, 3):
        write(tmp_path / "gt" / f"Subject_1_Story_{story}.csv", truth)
    write(tmp_path / "pred" / "Subject_1_Story_1.csv", pred, header="Valence")  # wrong case
    write(tmp_path / "pred" / "Subject_1_Story_2.csv", pred[:-5])  # length mismatch
    # Subject_1_Story_3 missing
    (tmp_path / "pred" / "notes.txt").write_text("x")
    report = score_dirs(tmp_path / "pred", tmp_path / "gt")
    text = "\n".join(report.problems)
    assert "'Valence' is not 'valence'" in text
    assert "495 predicted rows for 500 annotated frames" in text
    assert "no prediction for Subject_1_Story_3.csv" in text
    assert "'notes.txt'" in text
    assert report.scores == {}
    assert empathy(["score", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 1
    assert "would fail" in capsys.readouterr().out
    with pytest.raises(ValueError, match="exactly 'valence'"):
        read_valence_csv(tmp_path / "pred" / "Subject_1_Story_1.csv")


def test_csvs_the_project_writes_pass_the_official_reader(tmp_path: Path) -> None:
    truth, _ = curves(4)
    write_labels(tmp_path / "Subject_1_Story_1.csv", truth)
    assert read_valence_csv(tmp_path / "Subject_1_Story_1.csv") == pytest.approx(truth, abs=1e-6)


def test_the_documented_score_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """docs/training.md's ``empathy score`` block, line by line, in a scratch folder."""
    import re
    import shlex

    doc = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```bash\n(.*?)```", doc, flags=re.S) if "empathy score" in b)
    monkeypatch.chdir(tmp_path)
    for line in block.strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == ".venv/bin/empathy"
        assert empathy(argv[1:]) == 0, line
    out = capsys.readouterr().out
    assert "Subject 1 | 1.0000" in out and "would run on these inputs unchanged" in out


def test_evaluate_scores_every_annotated_frame_as_the_official_protocol() -> None:
    from shared.postprocess import fill_gaps
    from training.evaluate import MISSING_FRAMES, _score

    truth, pred = curves(5)
    pred = pred.copy()
    pred[100:300] = np.nan  # frames the module did not see (no face)
    seen = np.isfinite(pred)
    assert _score(truth, pred) == pytest.approx(official_ccc(truth, fill_gaps(pred)), abs=1e-12)
    assert abs(_score(truth, pred) - official_ccc(truth[seen], pred[seen])) > 1e-3  # not the seen frames only
    assert _score(truth, np.full(truth.size, np.nan)) == 0.0  # saw nothing
    assert _score(np.full(300, 0.5), np.full(300, 0.5)) == 0.0  # the script's nan (0/0) counts as 0 in a table
    assert "every annotated frame" in MISSING_FRAMES


def script_ccc_on_series(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The script's ccc() on what it really gets, pandas Series: numpy's mean/var/std on a Series call the
    Series' own methods, which skip NaN; pearsonr sees the NaN and gives nan, which the script makes 0."""
    with np.errstate(invalid="ignore"):
        rho = pearsonr(y_pred, y_true)[0]
    if math.isnan(rho):
        rho = 0
    std_predictions, std_gt = np.nanstd(y_pred), np.nanstd(y_true)
    return float(2 * rho * std_gt * std_predictions
                 / (std_predictions**2 + std_gt**2 + (np.nanmean(y_pred) - np.nanmean(y_true)) ** 2))


def test_a_prediction_with_nan_scores_zero_as_in_the_official_script(tmp_path: Path, capsys) -> None:
    """The issue's case: `empathy score` dropped the clip (mean 0.65) where the script scores it 0.0 (mean 0.32)."""
    truth_a, pred_a = curves(1)
    truth_b, pred_b = curves(2)
    pred_b = pred_b.copy()
    pred_b[100:180] = np.nan  # frames a module did not see, written as empty cells
    write(tmp_path / "gt" / "Subject_1_Story_1.csv", truth_a)
    write(tmp_path / "gt" / "Subject_1_Story_2.csv", truth_b)
    write(tmp_path / "pred" / "Subject_1_Story_1.csv", pred_a)
    (tmp_path / "pred").mkdir(exist_ok=True)
    (tmp_path / "pred" / "Subject_1_Story_2.csv").write_text(  # empty cells where the valence is missing
        "valence,agreement\n" + "".join(("" if math.isnan(v) else f"{v:.6f}") + ",0.5\n" for v in pred_b))
    read_back = read_valence_csv(tmp_path / "pred" / "Subject_1_Story_2.csv")
    assert int(np.isnan(read_back).sum()) == 80
    assert script_ccc_on_series(truth_b, read_back) == 0.0
    report = score_dirs(tmp_path / "pred", tmp_path / "gt")
    assert report.scores[(1, 2)] == 0.0  # scored, not dropped
    expected = (script_ccc(truth_a, pred_a) + 0.0) / 2
    assert report.personalized_mean == pytest.approx(expected, abs=1e-6)  # the CSVs hold 6 decimals
    assert any("80 empty or NaN" in p and "scores 0.0" in p for p in report.problems)
    assert not any("becomes nan" in p for p in report.problems)
