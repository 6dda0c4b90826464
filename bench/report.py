"""The benchmark's tables (Markdown), printed and written into ``docs/benchmarks.md``.

The document keeps hand-written text (how to run it, what was optimised and why) outside marked blocks;
each run replaces only its own block (:data:`BLOCK_START` / :data:`BLOCK_END`), so the latest table never
erases the notes around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.analyze_mode import AnalyzeRun
from bench.ensemble_mode import EnsembleRun, EnsembleSession
from bench.machine import Machine

BLOCK_START = "<!-- bench:start {key} (written by `{writer}`; edit outside this block) -->"
BLOCK_END = "<!-- bench:end {key} -->"
MODALITY_ORDER = ("audio", "text", "face", "landmarks", "body")
# Targets of issue 14 (5-minute 1280x720 video with speech recognition, 2 cores): benchmark, not timed tests.
TARGET_RTF = {"ensemble": 0.06, "analyze": 0.08}
TARGET_RTF_SHORT = 0.15  # `analyze` on a 30 s clip
TARGET_FLOOR_MULTIPLE = 1.5
TARGET_TOTAL_MIB = 3 * 1024


@dataclass
class DecodeFloor:
    n_frames: int
    grey_s: float  # every 25 fps frame, grey, full size: what the face and landmarks services decode
    grey_every5_s: float  # every 5th frame: what the body service converts
    audio_s: float  # 16 kHz mono: what the audio and text services decode


@dataclass
class JobFloor:
    """One decode + speech recognition alone on one core (``bench.floor``): the least a real job costs."""

    decode_cpu_s: float
    asr_cpu_s: float
    wall_s: float
    words: int

    @property
    def cpu_s(self) -> float:
        return self.decode_cpu_s + self.asr_cpu_s


@dataclass
class LengthResult:
    minutes: float
    duration_s: float
    floor: DecodeFloor
    job_floor: JobFloor | None = None
    analyze: AnalyzeRun | None = None  # with speech recognition (or the transcript when ASR is off)
    analyze_transcript: AnalyzeRun | None = None  # the clip's word timings given
    ensemble: EnsembleSession | None = None
    slow: AnalyzeRun | None = None  # analyze with the slow settings (every frame, no batching), transcript given


@dataclass
class Report:
    title: str
    machine: Machine
    command: str
    models_dir: str
    settings: str  # the speed settings in force (predict_every, batch size, threads)
    subject_std: float | None
    results: list[LengthResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    asr: bool = True  # the main rows recognise speech


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fps(frames: int, seconds: float | None) -> str:
    return "-" if not seconds else f"{frames / seconds:.0f}"


def _largest(run: EnsembleRun) -> float:
    return max((p.peak_rss_mib for p in run.processes), default=0.0)


def _runs(r: LengthResult) -> list[tuple[str, str, AnalyzeRun | EnsembleRun]]:
    """(mode, label, run) of every whole job measured on one length, the real job (ASR) first."""
    out: list[tuple[str, str, AnalyzeRun | EnsembleRun]] = []
    session = r.ensemble
    for mode, asr_run, given in (("ensemble", session.asr if session else None,
                                  session.transcript if session else None),
                                 ("analyze", r.analyze, r.analyze_transcript)):
        if asr_run is not None:
            out.append((mode, f"{mode}, with ASR", asr_run))
        if given is not None:
            out.append((mode, f"{mode}, transcript given", given))
    return out


def summary_table(report: Report) -> list[str]:
    rows = ["| run | video | wall s | real-time factor | CPU s (all processes) | CPU / floor | "
            "whole ensemble MiB (PSS) | sum of process peaks MiB | largest process MiB |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(report.results, key=lambda x: -x.minutes):
        floor = r.job_floor.cpu_s if r.job_floor else None
        for _mode, label, run in _runs(r):
            if isinstance(run, AnalyzeRun):
                total = peaks = largest = run.peak_rss_mib
            else:
                total, peaks, largest = run.total_pss_mib, run.sum_of_peaks_mib, _largest(run)
            multiple = "-" if not floor else f"{run.cpu_s / floor:.2f}x"
            rows.append(f"| {label} | {r.minutes:g} min | {run.wall_s:.1f} | {run.wall_s / r.duration_s:.3f} | "
                        f"{run.cpu_s:.1f} | {multiple} | {total:.0f} | {peaks:.0f} | {largest:.0f} |")
    return rows


def floor_lines(report: Report) -> list[str]:
    rows = ["| video | decode CPU s | ASR CPU s | floor CPU s | wall s (one core) | words recognised |",
            "|---|---|---|---|---|---|"]
    for r in sorted(report.results, key=lambda x: -x.minutes):
        f = r.job_floor
        if f is not None:
            rows.append(f"| {r.minutes:g} min | {f.decode_cpu_s:.1f} | {f.asr_cpu_s:.1f} | {f.cpu_s:.1f} | "
                        f"{f.wall_s:.1f} | {f.words} |")
    return rows if len(rows) > 2 else []


def target_lines(report: Report) -> list[str]:
    """Each target of issue 14 against the longest video's real job: met or missed, with the number."""
    r = max(report.results, key=lambda x: x.minutes)
    lines: list[str] = []
    for mode, label, run in _runs(r):
        if "ASR" not in label:
            continue
        rtf = run.wall_s / r.duration_s
        goal = TARGET_RTF[mode]
        lines.append(f"- {label}, {r.minutes:g} min: real-time factor {rtf:.3f} (target <= {goal}): "
                     f"{'met' if rtf <= goal else 'MISSED'}")
        if r.job_floor:
            multiple = run.cpu_s / r.job_floor.cpu_s
            lines.append(f"- {label}: CPU {multiple:.2f}x the floor (target <= {TARGET_FLOOR_MULTIPLE}x): "
                         f"{'met' if multiple <= TARGET_FLOOR_MULTIPLE else 'MISSED'}")
        if isinstance(run, EnsembleRun):
            lines.append(f"- whole ensemble {run.total_pss_mib:.0f} MiB PSS at its peak (target <= "
                         f"{TARGET_TOTAL_MIB} MiB): {'met' if run.total_pss_mib <= TARGET_TOTAL_MIB else 'MISSED'}")
    return lines


def throughput_table(report: Report) -> list[str]:
    r = max(report.results, key=lambda x: x.minutes)
    session = r.ensemble
    if session is None:
        return []
    rows = ["| jobs at once | wall s until all done | jobs per hour | CPU s per job | whole ensemble MiB (PSS) |",
            "|---|---|---|---|---|"]
    single = session.main
    rows.append(f"| 1 | {single.wall_s:.1f} | {3600.0 / single.wall_s:.0f} | {single.cpu_s:.1f} | "
                f"{single.total_pss_mib:.0f} |")
    for t in session.throughput:
        rows.append(f"| {t.jobs} | {t.wall_s:.1f} | {t.jobs_per_hour:.0f} | {t.cpu_s / t.jobs:.1f} | "
                    f"{t.total_pss_mib:.0f} |")
    return rows


def stage_table(r: LengthResult) -> list[str]:
    n = r.floor.n_frames
    rows = [f"Stages of the {r.minutes:g}-minute video ({n} frames at 25 fps) in the real job (with ASR). Frames/s = "
            "video frames per second of that stage's own time; in the ensemble the modalities run at the same "
            "time on the shared cores.",
            "",
            "| stage | analyze s | analyze frames/s | ensemble s | ensemble frames/s | of which preparing (ensemble) |",
            "|---|---|---|---|---|---|",
            f"| decode alone: grey, every frame (floor of face, landmarks) | {r.floor.grey_s:.1f} | "
            f"{_fps(n, r.floor.grey_s)} | | | |",
            f"| decode alone: grey, every 5th frame converted (floor of body) | {r.floor.grey_every5_s:.1f} | "
            f"{_fps(n, r.floor.grey_every5_s)} | | | |",
            f"| decode alone: audio 16 kHz mono (floor of audio, text) | {r.floor.audio_s:.2f} | "
            f"{_fps(n, r.floor.audio_s)} | | | |"]
    analyze = r.analyze.modality_seconds() if r.analyze else {}
    ensemble = r.ensemble.main.modalities if r.ensemble else {}
    for name in MODALITY_ORDER:
        a = analyze.get(name)
        e = ensemble[name].seconds if name in ensemble else None
        prep = ensemble[name].preparing_s if name in ensemble else None
        rows.append(f"| {name} (prepare + predict + post-process) | {_fmt(a)} | {_fps(n, a)} | {_fmt(e)} | "
                    f"{_fps(n, e)} | {_fmt(prep)} |")
    if r.analyze:
        startup = r.analyze.wall_s - float(r.analyze.document.get("seconds") or 0.0)
        rows.append(f"| analyze: start-up (interpreter, imports, model loading) and writing | {startup:.1f} | | | | |")
    if r.ensemble:
        main = r.ensemble.main
        busiest = max((t.seconds for t in main.modalities.values()), default=0.0)
        rows.append(f"| ensemble: upload {main.upload_s:.1f} s + queueing + fusion + polling (wall - slowest "
                    f"modality) | | | {main.wall_s - busiest:.1f} | | |")
    return rows


def memory_table(report: Report) -> list[str]:
    """Peak memory of every process at every length, and the CPU each spent during the longest real job."""
    results = sorted(report.results, key=lambda x: x.minutes)
    longest = results[-1]
    header = " | ".join(f"peak MiB, {r.minutes:g} min" for r in results)
    rows = [f"| process | {header} | CPU s during the {longest.minutes:g}-min job |",
            "|---|" + "---|" * (len(results) + 1)]
    labels: list[str] = []
    peaks: list[dict[str, float]] = []
    cpu: dict[str, float] = {}
    for r in results:
        table: dict[str, float] = {}
        if r.analyze:
            table["empathy analyze (one process)"] = r.analyze.peak_rss_mib
            if r is longest:
                cpu["empathy analyze (one process)"] = r.analyze.cpu_s
        main = r.ensemble.main if r.ensemble else None
        for p in main.processes if main else []:
            label = f"ensemble: {p.label}"
            table[label] = max(table.get(label, 0.0), p.peak_rss_mib)
            if r is longest:
                cpu[label] = cpu.get(label, 0.0) + main.job_cpu_s.get(p.pid, 0.0)
        peaks.append(table)
        labels += [label for label in table if label not in labels]
    for label in labels:
        rows.append(f"| {label} | " + " | ".join(_fmt(t.get(label), 0) for t in peaks) + f" | {_fmt(cpu.get(label))} |")
    return rows


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[both] - b[both]))) if both.any() else float("nan")


def _module(run: AnalyzeRun | EnsembleRun, name: str) -> np.ndarray:
    values = run.document["modalities"][name]["valence"]
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def equivalence_table(report: Report) -> list[str]:
    std = report.subject_std
    rows = ["| compared | video | max abs diff, fused valence | in subject std | per modality max abs diff |",
            "|---|---|---|---|---|"]
    for r in sorted(report.results, key=lambda x: x.minutes):
        pairs: list[tuple[str, AnalyzeRun | EnsembleRun, AnalyzeRun]] = []
        given = r.analyze_transcript or (r.analyze if not report.asr else None)
        if r.slow and given:
            pairs.append(("analyze, default settings vs slow settings (every frame, batch 1), transcript given",
                          given, r.slow))
        if r.ensemble and r.ensemble.transcript and given:
            pairs.append(("ensemble vs analyze, transcript given", r.ensemble.transcript, given))
        if r.ensemble and r.ensemble.asr and r.analyze and report.asr:
            pairs.append(("ensemble vs analyze, with ASR", r.ensemble.asr, r.analyze))
        for label, fast, reference in pairs:
            fused = _max_diff(fast.valence(), reference.valence())
            modules = ", ".join(f"{m} {_max_diff(_module(fast, m), _module(reference, m)):.4f}"
                                for m in MODALITY_ORDER if m in reference.document["modalities"])
            scaled = "-" if not std else f"{fused / std:.4f}"
            rows.append(f"| {label} | {r.minutes:g} min | {fused:.5f} | {scaled} | {modules} |")
    return rows


def render(report: Report) -> str:
    """The whole generated block (without the markers)."""
    lines = [f"## Latest run: {report.title}", "", f"Command: `{report.command}`", "", report.machine.markdown(),
             f"- models: `{report.models_dir}`", f"- speed settings: {report.settings}", "",
             "### Summary", "",
             "CPU / floor: the run's CPU seconds over the floor of a real job (one decode of the video + speech "
             "recognition alone, on one core; table below). Whole ensemble: the largest total PSS of all its "
             "processes, sampled every second during the job; sum of process peaks: their VmHWM added up (an "
             "upper bound: the peaks need not coincide, and shared pages count once per process).", "",
             *summary_table(report), ""]
    if floor_lines(report):
        lines += ["### Floor of a real job", "", *floor_lines(report), ""]
    if target_lines(report):
        lines += ["### Targets (issue 14)", "", *target_lines(report), ""]
    if throughput_table(report):
        lines += ["### Jobs per hour", "",
                  "Real jobs (with ASR) on the longest video uploaded together to the same ensemble (one worker "
                  "per modality).", "", *throughput_table(report), ""]
    main = max(report.results, key=lambda x: x.minutes)
    lines += ["### Stages", "", *stage_table(main), ""]
    lines += ["### Memory and CPU of each process", "",
              "Peak resident memory (VmHWM of each ensemble process, ru_maxrss of `analyze`): the ensemble is "
              "started afresh for each length, so each peak belongs to that video (an 8 s warm-up job and the "
              "transcript-given and ASR jobs).", "",
              *memory_table(report), ""]
    lines += ["### Fused result against the slow settings", "", *equivalence_table(report), ""]
    if report.notes:
        lines += ["### Notes", "", *[f"- {note}" for note in report.notes], ""]
    return "\n".join(lines)


def write_block(path: Path, block: str, preamble: Sequence[str], *, key: str, writer: str = "empathy bench") -> None:
    """Replace the generated block ``key`` of ``path`` (appended when absent; the file made with ``preamble``).

    One block per kind of run (``models``: the models directory; ``paper-size models``), so a run of one
    kind never erases the latest table of the other, nor the hand-written text around them. ``writer``: the
    command named in the start marker (the one that rewrites the block).
    """
    start, end = BLOCK_START.format(key=key, writer=writer), BLOCK_END.format(key=key)
    text = path.read_text() if path.is_file() else "\n".join(preamble) + "\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"
    else:
        text = f"{text.rstrip()}\n\n{start}\n{block}\n{end}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
