"""CCC per subject and story of exported models, laid out like the paper's Table I.

Evaluation runs the inference pipeline itself (:func:`shared.pipeline.run_modality`: prepare -> SavedModel
-> frames -> low-pass + per-subject re-scaling from the model's metadata), so the numbers are those a user
of the service would get, not those of a training-time shortcut. ``fusion:<method>`` scores the fused curve
of the modalities asked for (:func:`shared.pipeline.fuse_results`), which is what Table I reports, for every
fusion method of :mod:`shared.fusion_methods` (``learned`` when a fusion model has one);
:func:`render_side_by_side` puts every module and fusion next to each other, per subject and per story.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data import Clip, check_labels, discover
from shared.fusion import FusionModel
from shared.fusion_methods import get_method, method_names
from shared.postprocess import fill_gaps
from shared.scoring import ScoreGrid, official_ccc
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

FUSION = "fusion"


def fusion_table_name(method: str) -> str:
    return f"{FUSION}:{method}"


@dataclass
class Table(ScoreGrid):
    """CCC of one model (or of the fusion) for each (subject, story) clip evaluated."""

    name: str = ""

    def subject_mean(self, subject: int) -> float:
        return float(np.mean([v for (s, _), v in self.scores.items() if s == subject]))

    def story_mean(self, story: int) -> float:
        return float(np.mean([v for (_, k), v in self.scores.items() if k == story]))

    @property
    def mean(self) -> float:
        """Mean over subjects of the per-subject means (the paper's bottom-right cell)."""
        return float(np.mean([self.subject_mean(s) for s in self.subjects])) if self.scores else float("nan")

    def rows(self) -> list[list[str]]:
        """Header + one row per subject + the story averages, formatted with 2 decimals like Table I."""
        header = ["Subject", *[str(k) for k in self.stories], "Subj. Avg"]
        body = []
        for s in self.subjects:
            cells = [_fmt(self.scores.get((s, k))) for k in self.stories]
            body.append([str(s), *cells, _fmt(self.subject_mean(s))])
        footer = ["Story Avg", *[_fmt(self.story_mean(k)) for k in self.stories], _fmt(self.mean)]
        return [header, *body, footer]

    def render(self) -> str:
        rows = self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"{self.name}: CCC per subject (rows) and story (columns)"]
        lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.2f}"


def default_stories(clips: Sequence[Clip], metadata: dict[str, dict]) -> list[int]:
    """Stories none of the models trained on (validation and test); all stories if that leaves none."""
    trained = set()
    for meta in metadata.values():
        trained |= set(meta.get("train_stories") or [])
    held_out = sorted({c.story for c in clips} - trained)
    return held_out or sorted({c.story for c in clips})


def evaluate(data_dir: Path | str, models_dir: Path | str, modalities: Sequence[str], *,
             stories: Sequence[int] | None = None, fusion: bool = True,
             fusions: Sequence[str] | None = None, settings: Settings | None = None) -> dict[str, Table]:
    """One :class:`Table` per modality, and one per fusion method when ``fusion`` and several modalities.

    ``fusions``: method names (default: every method of :mod:`shared.fusion_methods`). A method that needs
    a fitted model (``learned``) is left out when ``models_dir`` has none (it would be its fallback relabelled).
    ``settings``: the pipeline's (default: the environment's, read here, the evaluation's entry).
    """
    from serving.client import open_models
    from shared.fusion import FusionError, load_fusion_model
    from shared.pipeline import fuse_results, run_modality
    from shared.values import STATUS_OK

    settings = settings or get_settings()
    clips = [c for c in discover(data_dir) if c.labels is not None]
    predictors, metadata = open_models(modalities, settings, models_dir=models_dir, local=True)
    chosen = set(stories) if stories else set(default_stories(clips, metadata))
    clips = [c for c in clips if c.story in chosen]
    if not clips:
        raise ValueError(f"no labelled clip of stories {sorted(chosen)} under {data_dir}")
    tables = {name: Table(name=name) for name in modalities}
    with_fusion = fusion and len(modalities) > 1
    model = load_fusion_model(models_dir)
    methods = fusions_to_evaluate(fusions, model)
    if with_fusion:
        for method in methods:
            tables[fusion_table_name(method)] = Table(name=fusion_table_name(method))
    for clip in clips:
        results = {}
        for name in modalities:
            result = run_modality(name, clip.video, subject=clip.subject, predictor=predictors[name],
                                  metadata=metadata[name], settings=settings, transcript=clip.transcript)
            if result.status != STATUS_OK:
                logger.warning("modality gave no prediction", extra={"modality": name, "clip": clip.name,
                                                                      "status": result.status, "detail": result.detail})
            labels = check_labels(clip, result.values.size) if result.values.size else None
            tables[name].scores[(clip.subject, clip.story)] = _score(labels, result.values)
            results[name] = result
        for method in methods if with_fusion else []:
            try:
                fused = fuse_results(results, metadata, clip.subject, settings=settings, weights_spec=method,
                                     models_dir=models_dir)
                score = _score(check_labels(clip, fused.valence.size), fused.valence)
            except FusionError as exc:
                logger.warning("nothing to fuse", extra={"clip": clip.name, "error": str(exc)})
                score = 0.0
            tables[fusion_table_name(method)].scores[(clip.subject, clip.story)] = score
        logger.info("clip evaluated", extra={"clip": clip.name, "ccc": {n: round(t.scores[(clip.subject, clip.story)], 3)
                                                                       for n, t in tables.items()}})
    return tables


def fusions_to_evaluate(fusions: Sequence[str] | None, model: FusionModel | None) -> list[str]:
    """``fusions`` (default: every method of :mod:`shared.fusion_methods`), less those that need a fitted
    fusion model when ``model`` has none (they would be their fallback relabelled)."""
    fitted = model is not None and model.learned() is not None
    return [m for m in (fusions or method_names()) if fitted or not getattr(get_method(m), "needs_model", False)]


MISSING_FRAMES = ("frames a module did not see are scored, as the official protocol scores every annotated "
                  "frame: filled by linear interpolation between seen frames (held at the ends), as a submitted "
                  "CSV would have to be; a module that saw nothing scores 0")


def _score(labels: np.ndarray | None, values: np.ndarray) -> float:
    """Official CCC over every annotated frame (:data:`MISSING_FRAMES`); 0 for no prediction at all.

    Scoring only the frames a module saw would flatter a module that skips hard frames; the challenge's
    script needs one value per frame and scores them all (:func:`shared.scoring.official_ccc`). The
    script's NaN (both curves exactly constant) counts as 0 here so that one clip does not blank a table.
    """
    if labels is None or not np.isfinite(values).any():
        return 0.0
    score = official_ccc(labels, fill_gaps(values))
    return 0.0 if np.isnan(score) else score


def render_side_by_side(tables: dict[str, Table]) -> str:
    """Every module and fusion as a column; rows: each subject's mean, each story's mean, the overall mean."""
    names = list(tables)
    first = next(iter(tables.values()))
    rows = [["", *names]]
    rows += [[f"Subject {s}", *[_fmt(t.subject_mean(s)) for t in tables.values()]] for s in first.subjects]
    rows += [[f"Story {k}", *[_fmt(t.story_mean(k)) for t in tables.values()]] for k in first.stories]
    rows.append(["Mean", *[_fmt(t.mean) for t in tables.values()]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["CCC side by side (modules and fusions)"]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def write_csv(tables: dict[str, Table], path: Path | str) -> None:
    """All tables in one CSV: a ``model`` column, then the rows of each table (as printed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for table in tables.values():
            rows = table.rows()
            writer.writerow(["model", *rows[0]])
            for row in rows[1:]:
                writer.writerow([table.name, *row])
