"""Fusion benchmark: module CCCs and every fusion's CCC and band coverage on a story no model saw.

    python -m bench.fusion --models-dir models --data data/synthetic --out docs/fusion.md

1. The modules of ``--models-dir`` are linked into a scratch models directory (the original stays
   untouched) and a fusion model is fit there on the validation story (:func:`training.fusion.train_fusion`,
   what ``empathy train fusion`` does) -- or ``--use-fusion-model`` takes the one already in ``--models-dir``.
2. Held-out clips are generated like the demo's sample (``empathy synth``, same seed, so the same listeners
   as the bundled data set) for stories outside it (``--stories``, default 7), ``--duration`` seconds each, for
   every listener of the data set; cached under ``--clips-dir``.
3. Every module runs on every held-out clip through the serving pipeline, then every fusion is scored
   against the ground truth: ``paper`` before this change (0.01 Hz, no clip-length bound, no fusion model),
   ``paper``, ``ccc`` (the default) and ``learned``; band coverage = share of ground-truth frames inside the
   band, to compare with the stated coverage.

The table is printed and written into the block ``fusion`` of ``--out`` (text around it is kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.report import write_block
from shared.ccc import ccc
from shared.data import discover
from shared.fusion import load_fusion_model
from shared.fusion_methods import method_names
from shared.pipeline import fuse_results
from shared.settings import MODALITIES, Settings, get_settings

PREAMBLE = [
    "# Fusion benchmark",
    "",
    "Module and fusion CCCs and band coverage on stories no model saw, for the bundled models (`make models`).",
    "One command writes each table below (a block per clip length; the text outside the blocks is kept):",
    "",
    "<!-- not-run: a benchmark, not a test: runs the five models on the validation and held-out clips (minutes) -->",
    "```bash",
    ".venv/bin/python -m bench.fusion --models-dir models --data data/synthetic --stories 7",
    "```",
    "",
    "It fits a fusion model on the validation story (Story 2) in a scratch copy of the models directory (what",
    "`empathy train fusion` does), generates held-out clips of stories outside the bundled set (Story 7 is the",
    "demo's; same generator and seed, so the same listeners), and scores every module and every fusion against",
    "the ground truth, whole clip, in the official scorer's maths. `paper, 0.01 Hz (before)` is the fusion as it",
    "was before the fusion model: the paper's coefficients and its 0.01 Hz final low-pass, unbounded. Band",
    "coverage: share of ground-truth frames inside the band. Method details: `docs/ensemble.md`.",
]
BEFORE = "paper, 0.01 Hz (before)"


def _label(method: str) -> str:
    """A fusion method's column: its name, ``(default)`` after the documented default's."""
    return f"{method} (default)" if method == Settings().fusion_weights else method


def _generate(clips_dir: Path, subjects: Sequence[int], stories: Sequence[int], duration_s: float) -> Path:
    from synthetic import generate_dataset

    have = {(c.subject, c.story) for c in discover(clips_dir) if c.labels is not None} if clips_dir.is_dir() else set()
    for story in stories:
        if not all((s, story) in have for s in subjects):
            generate_dataset(clips_dir, subjects=tuple(subjects), stories=(story,), duration_s=duration_s, seed=0)
    return clips_dir


def _scratch_models(models_dir: Path, scratch: Path) -> Path:
    """A models directory whose modules are links to ``models_dir``'s: a fusion model can be added safely."""
    scratch.mkdir(parents=True, exist_ok=True)
    for name in MODALITIES:
        if (models_dir / name).is_dir() and not (scratch / name).exists():
            os.symlink((models_dir / name).resolve(), scratch / name)
    return scratch


def _coverage(labels: np.ndarray, fused: object) -> float:
    low, high = fused.band_low, fused.band_high  # type: ignore[attr-defined]
    return float(np.mean((labels >= low) & (labels <= high)))


def run(models_dir: Path, data_dir: Path, clips_dir: Path, *, stories: Sequence[int], duration_s: float,
        use_fusion_model: bool, settings: Settings) -> tuple[str, dict[str, float]]:
    from training.fusion import module_curves, train_fusion

    started = time.monotonic()
    names = [m for m in MODALITIES if (models_dir / m).is_dir()]
    with tempfile.TemporaryDirectory(prefix="fusion-bench-") as tmp:
        if use_fusion_model:
            fusion_dir = models_dir
        else:
            fusion_dir = _scratch_models(models_dir, Path(tmp) / "models")
            train_fusion(data_dir, models_dir=fusion_dir, val_story=settings.val_story, settings=settings)
        model = load_fusion_model(fusion_dir)
        subjects = sorted({c.subject for c in discover(data_dir) if c.labels is not None})
        held_out = sorted((c for c in discover(_generate(clips_dir, subjects, stories, duration_s))
                           if c.story in stories and c.labels is not None), key=lambda c: (c.story, c.subject))
        curves, metadata = module_curves(held_out, fusion_dir, names, settings=settings)
        rows, scores = [], {}
        fusions = {BEFORE: None, **{_label(name): name for name in method_names()}}
        per: dict[str, list[float]] = {k: [] for k in [*names, *fusions]}
        cover: dict[str, list[float]] = {k: [] for k in fusions}
        outside: dict[str, list[float]] = {k: [] for k in [*names, *fusions]}
        for c in curves:
            for name in names:
                values = c.results[name].values
                seen = np.isfinite(values)
                per[name].append(ccc(c.labels[seen], values[seen]) if seen.sum() > 1 else 0.0)
                outside[name].append(float(np.mean(np.abs(values[seen]) > 1.0)) if seen.any() else 0.0)
            for label, spec in fusions.items():
                if spec is None:
                    before = dataclasses.replace(settings, fusion_min_cycles=0.0)
                    fused = fuse_results(c.results, metadata, c.clip.subject, weights_spec="paper", cutoff_hz=0.01,
                                         settings=before, models_dir=Path(tmp) / "no-fusion-model")
                else:
                    fused = fuse_results(c.results, metadata, c.clip.subject, weights_spec=spec, settings=settings,
                                         models_dir=fusion_dir)
                per[label].append(ccc(c.labels, fused.valence))
                cover[label].append(_coverage(c.labels, fused))
                outside[label].append(float(np.mean(np.abs(fused.valence) > 1.0)))
        for key, values in per.items():
            scores[key] = float(np.mean(values))
        best_module = max(names, key=lambda n: scores[n])
        stated = model.metadata["band_coverage"] if model is not None else None
        header = ["clip", *names, *fusions]
        rows.append(header)
        for i, c in enumerate(curves):
            rows.append([c.clip.name, *[f"{per[k][i]:.2f}" for k in [*names, *fusions]]])
        rows.append(["mean", *[f"{scores[k]:.2f}" for k in [*names, *fusions]]])
        rows.append([f"band coverage (stated {stated:.0%})" if stated else "band coverage", *[""] * len(names),
                     *[f"{np.mean(cover[k]):.0%}" for k in fusions]])
        if len(stories) > 1:
            for story in stories:
                index = [i for i, c in enumerate(curves) if c.clip.story == story]
                rows.append([f"band coverage, Story {story}", *[""] * len(names),
                             *[f"{np.mean([cover[k][i] for i in index]):.0%}" for k in fusions]])
        rows.append(["frames outside [-1, 1]", *[f"{np.mean(outside[k]):.0%}" for k in [*names, *fusions]]])
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "---|" * len(header))
        cutoffs = {m: model.cutoff(m) for m in method_names()} if model is not None else {}
        default, learned, paper = scores[_label("ccc")], scores[_label("learned")], scores[_label("paper")]
        checks = [
            f"default (ccc) {default:.2f} >= best module ({best_module} {scores[best_module]:.2f}) - 0.02: "
            f"{'yes' if default >= scores[best_module] - 0.02 else 'NO'}",
            f"default (ccc) {default:.2f} >= paper preset {paper:.2f}: {'yes' if default >= paper else 'NO'}",
            f"learned {learned:.2f} >= default {default:.2f}: {'yes' if learned >= default else 'NO'}",
        ]
        if stated:
            checks += [f"band coverage of {k} {np.mean(cover[k]):.0%} within 5 points of {stated:.0%}: "
                       f"{'yes' if abs(np.mean(cover[k]) - stated) <= 0.05 else 'NO'}" for k in list(fusions)[1:]]
        from training.evaluate import Table, render_side_by_side

        tables = {key: Table(name=key) for key in [*names, *fusions]}
        for key, table in tables.items():
            table.scores = {(c.clip.subject, c.clip.story): per[key][i] for i, c in enumerate(curves)}
        table_i = [render_side_by_side(tables), "", *[tables[k].render() + "\n" for k in fusions]]
        block = "\n".join([
            f"Held-out {'Story' if len(stories) == 1 else 'Stories'} {', '.join(map(str, stories))}: {len(curves)} "
            f"clips of {duration_s:g} s (listeners {subjects}), modules of "
            f"`{models_dir}`; fusion fit on Story {settings.val_story} "
            f"({'the existing fusion model' if use_fusion_model else 'fit by the benchmark'}; final low-pass chosen "
            "on validation: " + ", ".join(f"{m} {f'{v} Hz' if v else 'none'}" for m, v in cutoffs.items())
            + f"; a cut-off is raised to >= {settings.fusion_min_cycles / duration_s:.3g} Hz on {duration_s:g} s "
            f"clips, {settings.fusion_min_cycles:g} cycles). CCC per clip (official scorer's maths, whole clip):",
            "",
            *lines,
            "",
            *[f"* {check}" for check in checks],
            "",
            "Table I of every fusion (`training.evaluate`'s tables, as `empathy evaluate` prints them):",
            "",
            "```text",
            *table_i,
            "```",
            "",
            f"({time.monotonic() - started:.0f} s, `python -m bench.fusion --models-dir {models_dir} "
            f"--data {data_dir} --duration {duration_s:g} --stories {','.join(map(str, stories))}`)",
        ])
    return block, scores


def main(argv: list[str] | None = None) -> int:
    from shared.logs import configure_logging

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m bench.fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir)
    parser.add_argument("--data", type=Path, default=settings.data_dir, help="the data set the modules were trained on")
    parser.add_argument("--clips-dir", type=Path, default=Path("var/bench/fusion-clips"))
    parser.add_argument("--stories", default="7", help="held-out stories, outside the data set (e.g. 7,8,9)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per held-out clip (the demo's: 60)")
    parser.add_argument("--use-fusion-model", action="store_true",
                        help="score the fusion model of --models-dir instead of fitting one in a scratch copy")
    parser.add_argument("--out", type=Path, default=Path("docs/fusion.md"))
    args = parser.parse_args(argv)
    configure_logging()
    stories = [int(s) for s in args.stories.split(",") if s.strip()]
    block, _ = run(args.models_dir, args.data, args.clips_dir / f"{args.duration:g}s", stories=stories,
                   duration_s=args.duration, use_fusion_model=args.use_fusion_model, settings=settings)
    print(block)
    write_block(args.out, block, PREAMBLE, key=f"stories {args.stories}, {args.duration:g} s")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
