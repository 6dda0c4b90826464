"""``empathy analyze``: the whole pipeline in this process, on one video.

It needs no server at all: it loads the models in-process (``LocalPredictor``) and runs
:func:`shared.pipeline.analyze_video`, the very pipeline the workers run. When the models directory has
no model for a requested modality it first builds the bundled default models
(:mod:`training.bootstrap`; a few minutes, once).

On a folder, a glob or several videos (``empathy analyze DIR --out PRED_DIR``) it analyses each in turn with
the models loaded once and writes ``PRED_DIR/<video name>.csv`` (the scorer's layout; OMG-Empathy names
give the subject unless ``--subject`` does); a video whose CSV exists is skipped, so a second run resumes,
and the videos that failed are listed at the end with their reasons.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from cli.arguments import default_out
from jobs.request import add_arguments, check_args_video, request_from_args
from shared.logs import add_log_format_argument, configure_logging
from shared.settings import get_settings

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy analyze", description="Per-frame valence of one video, "
                                     "computed in this process (no servers).")
    parser.add_argument("inputs", nargs="+", metavar="VIDEO|DIR|GLOB",
                        help="a video; or a folder, glob pattern or several videos (needs --out PRED_DIR)")
    # the job request's fields: --subject, --modalities, --fusion (--weights), --listener (no service: no callback)
    add_arguments(parser, skip=("callback_url",))
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (default: <video>_valence.csv); several videos: the folder PRED_DIR")
    parser.add_argument("--json", type=Path, default=None, help="also write the full result document here")
    parser.add_argument("--plot", type=Path, default=None, help="also draw modules, fusion and agreement (PNG)")
    parser.add_argument("--models-dir", type=Path, default=None, help="model repository (default EMPATHY_MODELS_DIR)")
    parser.add_argument("--transcript", type=Path, default=None, help="word timings JSON (skips ASR)")
    parser.add_argument("--annotation", type=Path, default=None,
                        help="ground-truth valence CSV (OMG-Empathy annotation): drawn in --plot, CCC printed")
    parser.add_argument("--no-build", action="store_true",
                        help="fail instead of building the bundled default models when some are missing")
    add_log_format_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from empathy_client.batch import find_videos
    from jobs.files import write_json
    from serving.client import open_models
    from shared.fusion import FusionError
    from shared.pipeline import analyze_video, listener_notes
    from shared.results import build_document, to_csv
    from training.bootstrap import build_default_models, fusion_missing, missing_models

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    settings = get_settings()
    asked = request_from_args(parser, args)
    job = asked.resolve(settings)
    batch = len(args.inputs) > 1 or not Path(args.inputs[0]).is_file()
    try:
        videos = find_videos(args.inputs)
    except FileNotFoundError as exc:
        parser.error(str(exc) if batch else f"no such file: {args.inputs[0]}")
    if batch and (args.out is None or args.out.is_file() or args.json or args.plot or args.annotation
                  or args.transcript):
        parser.error("several videos need --out PRED_DIR (a folder), without --json/--plot/--annotation/--transcript")
    refused = "" if batch else unusable_video(videos[0], settings.min_duration_s)
    if refused:  # the gateway's rule, before any model is built (a folder reports such a file as failed)
        print(f"empathy analyze: not a usable video: {refused}", file=sys.stderr)
        return 2
    names = list(job.modalities)
    models_dir = args.models_dir or settings.models_dir
    missing = missing_models(models_dir, names)
    if missing:
        if args.no_build:
            print(f"empathy analyze: no model for {', '.join(missing)} under {models_dir} "
                  f"(build them: python -m training.bootstrap --models-dir {models_dir})", file=sys.stderr)
            return 2
        print(f"Building the bundled default models for {', '.join(missing)} under {models_dir} "
              f"(once; a few minutes)...", file=sys.stderr)
        build_default_models(models_dir, data_dir=settings.data_dir, modalities=missing, settings=settings)
    elif fusion_missing(models_dir) and not args.no_build:
        build_default_models(models_dir, data_dir=settings.data_dir, modalities=names,
                             settings=settings)  # fits only the fusion

    if batch:
        return _analyze_folder(videos, args.out, job, explicit_subject=asked.subject is not None,
                               models_dir=models_dir, settings=settings)
    args.video = videos[0]
    check_args_video(parser, job, args.video)  # e.g. a listener box too small for this video: before any work
    # log lines go above the bar (tqdm.write) instead of through it
    with logging_redirect_tqdm(), tqdm(total=len(names), desc="analyze", unit="modality", file=sys.stderr) as bar:

        def progress(name: str, stage: str, fraction: float) -> None:
            bar.set_postfix_str(f"{name}: {stage}")
            if fraction >= 1.0:
                bar.update(1)

        try:
            predictors, metadata = open_models(names, settings, models_dir=models_dir, local=True)
            result = analyze_video(args.video, subject=job.subject, modalities=names, predictors=predictors,
                                   metadata=metadata, models_dir=models_dir, transcript=args.transcript,
                                   progress=progress, settings=settings, options=job.pipeline_options())
        except FusionError as exc:
            bar.close()
            print(f"empathy analyze: no modality produced a prediction: {exc}", file=sys.stderr)
            return 1
    document = build_document(fusion=result.fusion, modalities=result.modalities, subject=result.subject,
                              fps=result.fps, video=args.video.name, seconds=result.seconds,
                              notes=listener_notes(result.modalities))
    out = args.out or default_out(args.video)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_csv(document))
    if args.json:
        write_json(args.json, document)
    truth = None
    if args.annotation:
        from shared.data import read_labels

        truth = read_labels(args.annotation)
    if args.plot:
        from shared.plot import render_png

        args.plot.write_bytes(render_png(document, ground_truth=truth))
    _print_summary(document, out, result.seconds, truth)
    return 0


def unusable_video(video: Path, min_duration_s: float) -> str:
    """Why ``video`` is not analysed ('' when it is): the gateway's own rule (a still image is refused with 415
    there; :func:`shared.media.check_video_input`), so both ways in accept the same files."""
    from shared.media import MediaError, check_video_input, probe

    try:
        check_video_input(probe(video), min_duration_s=min_duration_s)
    except MediaError as exc:
        return str(exc)
    return ""


def _print_summary(document: dict[str, Any], out: Path, seconds: float, truth: Any = None) -> None:
    """What was fused and how; with an annotation, the CCC of every module and of the fusion against it."""
    import numpy as np

    from shared.ccc import ccc

    def score(series: list[float | None]) -> str:
        if truth is None:
            return ""
        values = np.array([np.nan if v is None else v for v in series], dtype=np.float64)
        n = min(values.size, truth.size)
        seen = np.isfinite(values[:n])
        return f" CCC {ccc(truth[:n][seen], values[:n][seen]):.2f}" if seen.sum() > 1 else " CCC -"

    agreement = [a for a in document["agreement"] if a is not None]
    print(f"{document['n_frames']} frames ({document['duration_s']} s) analysed in {seconds:.1f} s")
    for name, entry in document["modalities"].items():
        weight = document["fusion"]["weights"].get(name)
        shown = f"weight {weight:.2f}" if weight is not None else "not fused"
        detail = f" - {entry['detail']}" if entry["detail"] else ""
        print(f"  {name:10s} {entry['status']:12s} {shown:12s} {entry['seconds']:.1f} s{score(entry['valence'])}{detail}")
    fusion = document["fusion"]
    cutoff = f"final low-pass {fusion['cutoff_hz']:.3g} Hz" if fusion["cutoff_hz"] > 0 else "no final low-pass"
    print(f"fusion {fusion['method']} ({cutoff}){score(document['valence'])}")
    if agreement:
        print(f"mean agreement {sum(agreement) / len(agreement):.2f}")
    for note in document.get("notes") or []:
        print(f"note: {note}")
    print(f"result: {out}")


def _analyze_folder(videos: list[Path], out_dir: Path, job: Any, *, explicit_subject: bool, models_dir: Path,
                    settings: Any) -> int:
    """Each video in turn with the models loaded once -> ``out_dir/<name>.csv``; existing CSVs are skipped."""
    import os
    import time

    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from empathy_client.batch import subject_of
    from serving.client import open_models
    from shared.pipeline import analyze_video, listener_notes
    from shared.results import build_document, to_csv

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.part"):  # a temporary file of a run killed while it wrote
        stale.unlink(missing_ok=True)
    names = list(job.modalities)
    predictors, metadata = open_models(names, settings, models_dir=models_dir, local=True)
    failed: list[tuple[str, str]] = []
    started = time.monotonic()
    counts = {"done": 0, "skipped": 0}
    with logging_redirect_tqdm(), tqdm(total=len(videos), desc="analyze", unit="video", file=sys.stderr) as bar:
        for video in videos:
            out = out_dir / f"{video.stem}.csv"
            if out.is_file():
                bar.write(f"skipped    {video.name}: {out} exists", file=sys.stdout)
                counts["skipped"] += 1
                bar.update(1)
                continue
            subject = job.subject if explicit_subject else (subject_of(video) or job.subject)
            refused = unusable_video(video, settings.min_duration_s)
            if refused:
                failed.append((video.name, f"not a usable video: {refused}"))
                bar.write(f"FAILED     {video.name}: not a usable video: {refused}", file=sys.stdout)
                bar.update(1)
                continue
            try:
                result = analyze_video(video, subject=subject, modalities=names, predictors=predictors,
                                       metadata=metadata, models_dir=models_dir, settings=settings,
                                       options=job.pipeline_options())
                document = build_document(fusion=result.fusion, modalities=result.modalities, subject=result.subject,
                                          fps=result.fps, video=video.name, seconds=result.seconds,
                                          notes=listener_notes(result.modalities))
                partial = out.with_name(f".{out.name}.part")
                partial.write_text(to_csv(document))
                os.replace(partial, out)  # whole, or not at all: a rerun never takes half a CSV for done
                counts["done"] += 1
                bar.write(f"done       {video.name} -> {out} ({result.seconds:.1f} s)", file=sys.stdout)
            except Exception as exc:  # noqa: BLE001 - one bad video must not stop the folder; reported below
                failed.append((video.name, f"{type(exc).__name__}: {exc}"))
                bar.write(f"FAILED     {video.name}: {type(exc).__name__}: {exc}", file=sys.stdout)
            bar.update(1)
    print(f"{len(videos)} videos in {time.monotonic() - started:.1f} s: {counts['done']} done, {counts['skipped']} "
          f"skipped (CSV there already), {len(failed)} failed; predictions in {out_dir}/")
    if failed:
        print(f"empathy analyze: {len(failed)} of {len(videos)} videos failed (run again to retry them):",
              file=sys.stderr)
        for name, reason in failed:
            print(f"  {name}: {reason}", file=sys.stderr)
        return 1
    return 0
