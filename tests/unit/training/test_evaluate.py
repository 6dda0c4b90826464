"""training.evaluate: the paper's Table I layout from per-clip CCCs, and ``evaluate`` on a tiny labelled set.

The tables are checked on hand-made scores (every cell and mean known in advance); ``evaluate`` itself runs
the inference pipeline on the session's synthetic data set with tiny exported models (slow: the data set).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from serving.client import open_model
from shared.data import discover, read_labels
from shared.pipeline import run_modality
from shared.postprocess import fill_gaps
from shared.scoring import official_ccc
from shared.settings import get_settings
from tests.ensemble_support import export_tiny_model
from training.evaluate import (
    Table,
    default_stories,
    evaluate,
    fusion_table_name,
    render_side_by_side,
    write_csv,
)

SCORES = {(1, 3): 0.50, (1, 4): 0.30, (2, 3): 0.10, (2, 4): -0.10, (3, 3): 0.20}  # subject 3 has story 3 only


def _table(name: str = "audio", scores: dict[tuple[int, int], float] = SCORES) -> Table:
    return Table(scores=dict(scores), name=name)


def test_means_per_subject_per_story_and_overall() -> None:
    table = _table()
    assert table.subjects == [1, 2, 3] and table.stories == [3, 4]
    assert table.subject_mean(1) == pytest.approx(0.40) and table.subject_mean(3) == pytest.approx(0.20)
    assert table.story_mean(3) == pytest.approx((0.5 + 0.1 + 0.2) / 3) and table.story_mean(4) == pytest.approx(0.10)
    # the paper's bottom-right cell: the mean of the subjects' means (not of all clips: 0.2 here)
    assert table.mean == pytest.approx((0.40 + 0.00 + 0.20) / 3)
    assert np.isnan(Table(name="empty").mean)


def test_the_table_is_laid_out_like_table_one() -> None:
    rows = _table().rows()
    assert rows == [["Subject", "3", "4", "Subj. Avg"],
                    ["1", "0.50", "0.30", "0.40"],
                    ["2", "0.10", "-0.10", "0.00"],
                    ["3", "0.20", "", "0.20"],  # a clip not evaluated is an empty cell
                    ["Story Avg", "0.27", "0.10", "0.20"]]
    lines = _table().render().splitlines()
    assert lines[0] == "audio: CCC per subject (rows) and story (columns)"
    assert len({len(line) for line in lines[1:]}) == 1  # right-aligned columns
    assert lines[-1].split() == ["Story", "Avg", "0.27", "0.10", "0.20"]


def test_modules_and_fusions_side_by_side_and_in_one_csv(tmp_path: Path) -> None:
    tables = {"audio": _table(), fusion_table_name("ccc"): _table("fusion:ccc", {k: v + 0.1 for k, v in SCORES.items()})}
    lines = render_side_by_side(tables).splitlines()
    assert lines[0] == "CCC side by side (modules and fusions)"
    assert lines[1].split() == ["audio", "fusion:ccc"]
    assert lines[2].split() == ["Subject", "1", "0.40", "0.50"]
    assert lines[-1].split() == ["Mean", "0.20", "0.30"]
    write_csv(tables, tmp_path / "out" / "table.csv")
    rows = list(csv.reader((tmp_path / "out" / "table.csv").open()))
    assert rows[0] == ["model", "Subject", "3", "4", "Subj. Avg"] and rows[1] == ["audio", "1", "0.50", "0.30", "0.40"]
    assert [r[0] for r in rows].count("fusion:ccc") == 4 and len(rows) == 2 * 5


def test_default_stories_are_those_no_model_trained_on() -> None:
    clips = [type("Clip", (), {"story": k})() for k in (1, 2, 3, 4, 5)]
    assert default_stories(clips, {"audio": {"train_stories": [1, 3]}, "text": {"train_stories": [4]}}) == [2, 5]
    assert default_stories(clips, {"audio": {"train_stories": [1, 2, 3, 4, 5]}}) == [1, 2, 3, 4, 5]  # none left: all
    assert default_stories(clips, {"audio": {}}) == [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def tiny_models(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny untrained audio and text models (they record no training stories: every story is held out)."""
    models = tmp_path_factory.mktemp("evaluate-models")
    clip = next(c for c in discover(synthetic_dataset) if c.subject == 1 and c.story == 2)
    for seed, name in enumerate(("audio", "text")):
        export_tiny_model(models, name, clip.video, transcript=clip.transcript, seed=seed)
    return models


@pytest.mark.slow
def test_evaluate_scores_every_labelled_clip_through_the_pipeline(synthetic_dataset: Path, tiny_models: Path) -> None:
    tables = evaluate(synthetic_dataset, tiny_models, ["audio", "text"], stories=[3])
    assert list(tables) == ["audio", "text", "fusion:paper", "fusion:ccc"]  # no learned fusion model here
    for table in tables.values():
        assert set(table.scores) == {(1, 3), (2, 3)} and all(-1 <= v <= 1 for v in table.scores.values())
    # one cell recomputed by hand: the service's pipeline, then the official CCC over every annotated frame
    clip = next(c for c in discover(synthetic_dataset) if (c.subject, c.story) == (2, 3))
    settings = get_settings()
    model = open_model("audio", settings, models_dir=tiny_models, local=True)
    audio = run_modality("audio", clip.video, subject=2, predictor=model.predictor, metadata=model.metadata,
                         settings=settings).values
    assert audio.size == 500 and np.isfinite(audio).any()  # 20 s at 25 fps
    assert tables["audio"].scores[(2, 3)] == pytest.approx(official_ccc(read_labels(clip.labels), fill_gaps(audio)))

    only = evaluate(synthetic_dataset, tiny_models, ["audio"], stories=[1, 2])
    assert list(only) == ["audio"] and set(only["audio"].scores) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    with pytest.raises(ValueError, match=r"no labelled clip of stories \[9\]"):
        evaluate(synthetic_dataset, tiny_models, ["audio"], stories=[9])
