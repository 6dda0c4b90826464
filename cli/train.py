"""``empathy train`` and ``empathy evaluate``: thin argument parsing over :mod:`training.trainer` / ``evaluate``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from shared.logs import add_log_format_argument, configure_logging
from shared.settings import MODALITIES, Settings, get_settings

logger = logging.getLogger(__name__)


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse (numbers, lists, true/false), else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"{flag} expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise SystemExit(f"{flag} expects comma-separated numbers, got {text!r}") from exc


def train_main(argv: list[str]) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="empathy train",
        description="Train one modality (loss 1 - CCC, Adam, early stopping on validation CCC), choose its "
                    "low-pass cut-off and export models/<modality>/<version>/ (SavedModel + metadata.json). "
                    "'fusion' fits the fusion (cut-offs, learned fusion, confidence bands) on the validation "
                    "predictions of the exported modules -> models/fusion/<version>/metadata.json.")
    parser.add_argument("modality", choices=[*MODALITIES, "fusion"])
    parser.add_argument("--data", type=Path, default=settings.data_dir, help="OMG-Empathy-layout data set")
    parser.add_argument("--val-story", type=int, default=settings.val_story, help="story held out for validation")
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir)
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the modality's)")
    parser.add_argument("--batch-size", type=int, help="default: the paper's for the modality")
    parser.add_argument("--lr", type=float, help="Adam learning rate")
    parser.add_argument("--patience", type=int, help="epochs without a better validation CCC before stopping")
    parser.add_argument("--hparam", action="append", metavar="KEY=VALUE",
                        help="model hyperparameter, e.g. gru_units=16 (repeatable)")
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="preprocessing parameter, e.g. slice_overlap=0.5 (repeatable)")
    parser.add_argument("--subjects", help="only these subjects, e.g. 1,2,3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-stride", type=int, default=1, metavar="K",
                        help="each epoch fits every K-th training window, the offset moving each epoch (vision "
                             "windows of neighbouring frames nearly repeat each other); validation uses all. "
                             "Default 1: every window, as the paper")
    parser.add_argument("--coverage", type=float, default=settings.fusion_band_coverage,
                        help="fusion only: share of validation labels the confidence band must hold")
    add_log_format_argument(parser)
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")

    from shared.data import discover
    from training.trainer import train

    clips = discover(args.data)
    if args.subjects:
        wanted = set(_int_list(args.subjects, "--subjects") or [])
        clips = [c for c in clips if c.subject in wanted]
    if args.modality == "fusion":
        return _train_fusion(args, clips, settings)
    result = train(args.modality, models_dir=args.models_dir, val_story=args.val_story, epochs=args.epochs,
                   batch_size=args.batch_size, learning_rate=args.lr, patience=args.patience,
                   hparams=_key_values(args.hparam, "--hparam"), params=_key_values(args.param, "--param"),
                   clips=clips, seed=args.seed, train_stride=args.train_stride, settings=settings)
    meta = result.metadata
    print(f"{args.modality}: exported {result.version_dir}")
    print(f"  validation CCC {meta['val_ccc']:.3f} raw, {meta['val_ccc_filtered']:.3f} after low-pass "
          f"{meta['cutoff_hz']} Hz + re-scaling; {meta['training']['epochs_run']} epochs "
          f"(best {meta['training']['best_epoch']}), {meta['train_seconds']:.0f} s")
    return 0


def _train_fusion(args: argparse.Namespace, clips: list[Any], settings: Settings) -> int:
    from training.fusion import train_fusion

    result = train_fusion(models_dir=args.models_dir, val_story=args.val_story, clips=clips,
                          coverage=args.coverage, seed=args.seed, settings=settings)
    meta = result.metadata
    print(f"fusion: exported {result.version_dir} (fit on {', '.join(meta['val_clips'])})")
    for method, entry in meta["methods"].items():
        band = entry["band"]
        cutoff = f"{entry['cutoff_hz']} Hz" if entry["cutoff_hz"] > 0 else "none"
        print(f"  {method:8s} validation CCC {entry['val_ccc']:.3f}, final low-pass {cutoff}, band "
              f"+-{band['k']:.2f} x (spread + {band['floor']:g} std) holds {band['val_coverage']:.0%} "
              f"(target {meta['band_coverage']:.0%})")
    for note in meta.get("notes", []):
        print(f"  note: {note}")
    return 0


def evaluate_main(argv: list[str]) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="empathy evaluate",
        description="CCC per subject (rows) and story (columns) of the exported models, with subject and story "
                    "averages (the paper's Table I), through the same pipeline the service runs.")
    parser.add_argument("--data", type=Path, default=settings.data_dir)
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir)
    parser.add_argument("--modality", default="all",
                        help="one modality, a comma-separated list, or 'all' (every exported model + fusion)")
    parser.add_argument("--stories", help="e.g. 3,6,7 (default: stories the models did not train on)")
    parser.add_argument("--out", type=Path, help="write the tables to this CSV")
    add_log_format_argument(parser)
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")

    from serving.model_store import list_versions
    from training.evaluate import MISSING_FRAMES, evaluate, render_side_by_side, write_csv

    if args.modality == "all":
        names = [m for m in MODALITIES if list_versions(args.models_dir / m)]
        if not names:
            print(f"empathy evaluate: no exported model under {args.models_dir}")
            return 2
    else:
        names = [m.strip() for m in args.modality.split(",") if m.strip()]
        unknown = [m for m in names if m not in MODALITIES]
        if unknown:
            raise SystemExit(f"unknown modality {unknown}; expected some of {', '.join(MODALITIES)}")
    tables = evaluate(args.data, args.models_dir, names, stories=_int_list(args.stories, "--stories"),
                      settings=settings)
    for table in tables.values():
        print(table.render())
        print()
    if len(tables) > 1:
        print(render_side_by_side(tables))
        print()
    print(f"CCC as the official calculateCCC.py computes it; {MISSING_FRAMES}.")
    if args.out:
        write_csv(tables, args.out)
        print(f"wrote {args.out}")
    return 0
