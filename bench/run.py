"""``empathy bench``: speed and memory of a real job, (a) through ``empathy analyze`` and (b) through the ensemble.

    empathy bench                      # 5-minute 1280x720 video, plus a 1-minute one to show memory is flat
    empathy bench --quick              # 1 minute (and 30 s), for a quick look
    empathy bench --minutes 5 --compare-minutes 1 --modes analyze,ensemble --models-dir models --out docs/benchmarks.md
    empathy bench --paper-size-models  # the paper's architectures (untrained): what a fully trained ensemble costs

It generates synthetic OMG-Empathy-style clips (a real face on a moving body, speech, a transcript) at the
requested size, cached under ``--clips-dir``, then for each length measures: the decode floor (decoding
alone) and the floor of a real job (one decode + speech recognition alone, on one core: ``bench.floor``),
``empathy analyze`` in a child process (wall, CPU, peak memory, seconds per modality) and a fresh
``empathy up`` ensemble (wall from upload to result, seconds per modality, peak memory of every process
and the total memory of all of them). On the longest clip the ensemble also runs 2 and 4 jobs at once
(``--concurrency``) for its jobs per hour. On the shortest clip it also runs ``analyze`` with the slow
settings (every frame predicted, one window per model call) and reports how far the fused curve moves.
The tables are printed and written into ``--out`` (``docs/benchmarks.md``) with a description of the machine.

Real listener videos come without a transcript, so the main rows recognise speech (the configured ASR,
faster-whisper by default); the clip's transcript (word timings, as the paper's Amazon Transcribe output
was) is given in a second row of each mode (``--no-transcript-run`` skips it, ``--no-asr`` runs only it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.analyze_mode import run_analyze
from bench.decode_speed import measure
from bench.ensemble_mode import run_ensemble
from bench.machine import describe
from bench.report import DecodeFloor, JobFloor, LengthResult, Report, render, write_block
from shared.logs import add_log_format_argument, configure_logging
from shared.settings import MODALITIES, get_settings

REPO = Path(__file__).resolve().parent.parent
SUBJECT = 1  # a listener the bundled models know (their per-subject statistics apply)
WARMUP_SECONDS = 8.0
SLOW_SETTINGS = {"EMPATHY_PREDICT_EVERY": "1", "EMPATHY_BATCH_SIZE": "1"}
PREAMBLE = [
    "# Benchmarks",
    "",
    "Speed and memory of a whole job on a synthetic 1280x720, 25 fps listener video, all five modalities:",
    "`empathy bench` (or `make bench`) writes the block below; `empathy bench --help` lists the options.",
]


def parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, got {text!r}")
    return int(width), int(height)


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(modes) - {"analyze", "ensemble"})
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are a comma list of analyze, ensemble; got {text!r}")
    return modes


def parse_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"a comma list of positive job counts, got {text!r}")
    return counts


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="empathy bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the measured video (default 5)")
    parser.add_argument("--compare-minutes", type=float, default=1.0,
                        help="a second, shorter length measured the same way, to show memory does not grow with "
                             "length; 0 = none (default 1)")
    parser.add_argument("--quick", action="store_true", help="--minutes 1 --compare-minutes 0.5")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="frame size WxH (default 1280x720)")
    parser.add_argument("--modes", type=parse_modes, default=["analyze", "ensemble"],
                        help="comma list of analyze, ensemble (default both)")
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir,
                        help="model repository; the bundled models are built there when missing")
    parser.add_argument("--clips-dir", type=Path, default=Path("var/bench/clips"), help="cache of generated clips")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="Markdown file whose generated block is replaced ('-' = print only)")
    parser.add_argument("--no-slow-check", action="store_true",
                        help="skip the comparison with the slow settings (every frame, batch 1)")
    parser.add_argument("--no-asr", action="store_true",
                        help="give the clip's transcript only (no speech recognition: not a real job)")
    parser.add_argument("--no-transcript-run", action="store_true",
                        help="skip the second row of each mode (the clip's transcript given)")
    parser.add_argument("--concurrency", type=parse_counts, default=[1, 2, 4],
                        help="jobs submitted at once to the ensemble on the longest clip (default 1,2,4)")
    parser.add_argument("--paper-size-models", action="store_true",
                        help="measure with the paper-size architectures, untrained (built once under "
                             "<clips-dir>/../paper-size-models; bench.paper_models) instead of --models-dir")
    add_log_format_argument(parser)
    return parser


def ensure_models(models_dir: Path) -> None:
    from training.bootstrap import build_default_models, missing_models

    missing = missing_models(models_dir, MODALITIES)
    if missing:
        print(f"building the bundled models for {', '.join(missing)} under {models_dir} (once; minutes)...",
              file=sys.stderr, flush=True)
        build_default_models(models_dir, data_dir=get_settings().data_dir, modalities=missing)


def ensure_clip(clips_dir: Path, seconds: float, size: tuple[int, int]) -> tuple[Path, Path]:
    """A cached synthetic clip of ``seconds`` at ``size``: (video, transcript); generated when absent."""
    from synthetic import generate_clip

    folder = clips_dir / f"{size[0]}x{size[1]}_{seconds:g}s"
    video = folder / "Videos" / "Subject_1_Story_1.mp4"
    transcript = folder / "Transcripts" / "Subject_1_Story_1.json"
    if not (video.is_file() and transcript.is_file()):
        print(f"generating a {seconds:g} s {size[0]}x{size[1]} clip under {folder} (cached)...", file=sys.stderr,
              flush=True)
        clip = generate_clip(folder, SUBJECT, 1, duration_s=seconds, width=size[0], height=size[1], seed=0)
        video, transcript = clip.video, clip.transcript
    return video, transcript


def decode_floor(video: Path) -> DecodeFloor:
    """Decoding alone, as each service does it: the part of every stage no model or tracker can remove."""
    from shared.media import read_audio

    n_frames, grey_s = measure(video, 1, gray=True)
    _, every5_s = measure(video, 1, gray=True, every=5)
    started = time.perf_counter()
    read_audio(video)
    return DecodeFloor(n_frames=n_frames, grey_s=grey_s, grey_every5_s=every5_s,
                       audio_s=time.perf_counter() - started)


def job_floor(video: Path) -> JobFloor:
    """``bench.floor`` in a child process (pinned to one core there): one decode + ASR alone."""
    done = subprocess.run([sys.executable, "-m", "bench.floor", str(video)], capture_output=True, text=True,
                          env={**os.environ, "EMPATHY_LOG_LEVEL": "WARNING"}, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"bench.floor failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return JobFloor(decode_cpu_s=data["decode_cpu_s"], asr_cpu_s=data["asr_cpu_s"],
                    wall_s=data["decode_wall_s"] + data["asr_wall_s"], words=data["words"])


def subject_std(models_dir: Path) -> float | None:
    """The listener's label std (what every curve is re-scaled to): the unit of the equivalence table."""
    from serving.model_store import read_metadata, version_dir
    from shared.pipeline import fusion_stats

    metadata = {name: read_metadata(version_dir(models_dir, name)) for name in MODALITIES}
    stats = fusion_stats(metadata, SUBJECT)
    return None if stats is None else float(stats["std"])


def speed_settings() -> str:
    s = get_settings()
    return (f"EMPATHY_PREDICT_EVERY={s.predict_every}, EMPATHY_BATCH_SIZE={s.batch_size}, "
            f"EMPATHY_DECODE_THREADS={s.decode_threads}; ASR: EMPATHY_ASR_SOURCE={s.asr_source}, "
            f"EMPATHY_WHISPER_COMPUTE_TYPE={s.whisper_compute_type}, EMPATHY_WHISPER_BEAM_SIZE={s.whisper_beam_size}, "
            f"EMPATHY_WHISPER_VAD={'on' if s.whisper_vad else 'off'}, "
            f"EMPATHY_WHISPER_BATCH_SIZE={s.whisper_batch_size}, EMPATHY_WHISPER_THREADS={s.whisper_threads}, "
            f"EMPATHY_ASR_CHUNK_S={s.asr_chunk_s:g}")


def pick_models(args: argparse.Namespace, sample: Path, sample_transcript: Path) -> tuple[Path, str, str]:
    """(models directory, title, label): the paper-size architectures or ``--models-dir`` (built if missing)."""
    if args.paper_size_models:
        from bench.paper_models import ensure_paper_size_models

        models_dir = ensure_paper_size_models(args.clips_dir.resolve().parent / "paper-size-models", sample,
                                              sample_transcript)
        return models_dir, "paper-size architectures (untrained)", f"paper-size, untrained ({models_dir})"
    models_dir = args.models_dir.resolve()
    ensure_models(models_dir)
    return models_dir, "the models directory", str(args.models_dir)


def measure_length(minutes: float, args: argparse.Namespace, *, models_dir: Path, workdir: Path,
                   warmup: tuple[Path, Path], slow_check: bool, concurrency: tuple[int, ...]) -> LengthResult:
    """Floors, then each requested mode, on the clip of ``minutes``."""
    video, transcript = ensure_clip(args.clips_dir.resolve(), round(minutes * 60.0, 3), args.size)
    asr = not args.no_asr
    given = transcript if (args.no_asr or not args.no_transcript_run) else None
    print(f"[{minutes:g} min] decode floor...", file=sys.stderr, flush=True)
    floor = decode_floor(video)
    result = LengthResult(minutes=minutes, duration_s=floor.n_frames / get_settings().fps, floor=floor)
    if asr:
        print(f"[{minutes:g} min] floor of a real job (one decode + ASR, one core)...", file=sys.stderr, flush=True)
        result.job_floor = job_floor(video)
    if "analyze" in args.modes:
        if asr:
            print(f"[{minutes:g} min] empathy analyze, with ASR...", file=sys.stderr, flush=True)
            result.analyze = run_analyze(video, models_dir=models_dir, workdir=workdir / "analyze", subject=SUBJECT,
                                         transcript=None)
        if given is not None:
            print(f"[{minutes:g} min] empathy analyze, transcript given...", file=sys.stderr, flush=True)
            result.analyze_transcript = run_analyze(video, models_dir=models_dir, workdir=workdir / "analyze-t",
                                                    subject=SUBJECT, transcript=given)
            if not asr:
                result.analyze, result.analyze_transcript = result.analyze_transcript, None
        if slow_check:
            print(f"[{minutes:g} min] empathy analyze, slow settings...", file=sys.stderr, flush=True)
            result.slow = run_analyze(video, models_dir=models_dir, workdir=workdir / "slow", subject=SUBJECT,
                                      transcript=transcript, env=SLOW_SETTINGS)
    if "ensemble" in args.modes:
        print(f"[{minutes:g} min] ensemble (empathy up + uploads)...", file=sys.stderr, flush=True)
        result.ensemble = run_ensemble(video, warmup=warmup[0], models_dir=models_dir, workdir=workdir / "ensemble",
                                       subject=SUBJECT, transcript=given, with_asr=asr, concurrency=concurrency)
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    if args.quick:
        args.minutes, args.compare_minutes = 1.0, 0.5
    lengths = sorted({args.minutes, *([args.compare_minutes] if args.compare_minutes > 0 else [])})
    machine = describe(REPO)
    warmup = ensure_clip(args.clips_dir.resolve(), WARMUP_SECONDS, args.size)
    models_dir, title, label = pick_models(args, *warmup)
    command = " ".join(["empathy bench", shlex.join(argv if argv is not None else sys.argv[1:])]).strip()
    report = Report(title=title, machine=machine, command=command, models_dir=label, settings=speed_settings(),
                    subject_std=subject_std(models_dir), asr=not args.no_asr)
    with tempfile.TemporaryDirectory(prefix="empathy-bench-") as tmp:
        for minutes in lengths:
            report.results.append(measure_length(
                minutes, args, models_dir=models_dir, workdir=Path(tmp) / f"{minutes:g}min", warmup=warmup,
                slow_check="analyze" in args.modes and not args.no_slow_check and minutes == lengths[0],
                concurrency=tuple(args.concurrency) if minutes == lengths[-1] else ()))
    machine.load_after = os.getloadavg()
    report.notes.append("the clip's transcript (word timings) was given: speech recognition is not included"
                        if args.no_asr else
                        "rows 'with ASR' recognise the speech (the configured ASR source; the text modality "
                        "includes it); rows 'transcript given' read the clip's word timings instead")
    block = render(report)
    print(block)
    if str(args.out) != "-":
        write_block(args.out, block, PREAMBLE, key="paper-size models" if args.paper_size_models else "models")
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
