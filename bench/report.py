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
from bench.ensemble_mode import EnsembleRun
from bench.machine import Machine

BLOCK_START = "<!-- bench:start {key} (written by `empathy bench`; edit outside this block) -->"
BLOCK_END = "<!-- bench:end {key} -->"
TARGET_RTF = 0.25
TARGET_PEAK_MIB = 2.5 * 1024
MODALITY_ORDER = ("audio", "text", "face", "landmarks", "body")


@dataclass
class DecodeFloor:
    n_frames: int
    grey_s: float  # every 25 fps frame, grey, full size: what the face and landmarks services decode
    grey_every5_s: float  # every 5th frame: what the body service converts
    audio_s: float  # 16 kHz mono: what the audio and text services decode


@dataclass
class LengthResult:
    minutes: float
    duration_s: float
    floor: DecodeFloor
    analyze: AnalyzeRun | None = None
    ensemble: EnsembleRun | None = None
    slow: AnalyzeRun | None = None  # analyze with the slow settings (every frame, no batching)


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


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fps(frames: int, seconds: float | None) -> str:
    return "-" if not seconds else f"{frames / seconds:.0f}"


def _largest(run: EnsembleRun) -> float:
    return max((p.peak_rss_mib for p in run.processes), default=0.0)


def summary_table(report: Report) -> list[str]:
    rows = ["| run | video | wall s | real-time factor | CPU s (all processes) | largest process peak MiB | "
            "RTF <= 0.25 | peak < 2.5 GiB |",
            "|---|---|---|---|---|---|---|---|"]
    for r in sorted(report.results, key=lambda x: -x.minutes):
        for name, run in (("analyze", r.analyze), ("ensemble", r.ensemble)):
            if run is None:
                continue
            peak = run.peak_rss_mib if isinstance(run, AnalyzeRun) else _largest(run)
            rtf = run.wall_s / r.duration_s
            rows.append(f"| {name} | {r.minutes:g} min | {run.wall_s:.1f} | {rtf:.3f} | {run.cpu_s:.1f} | {peak:.0f} | "
                        f"{'yes' if rtf <= TARGET_RTF else 'NO'} | {'yes' if peak < TARGET_PEAK_MIB else 'NO'} |")
    return rows


def stage_table(r: LengthResult) -> list[str]:
    n = r.floor.n_frames
    rows = [f"Stages of the {r.minutes:g}-minute video ({n} frames at 25 fps). Frames/s = video frames per second of "
            "that stage's own time; in the ensemble the modalities run at the same time on the shared cores.",
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
    ensemble = r.ensemble.modalities if r.ensemble else {}
    for name in MODALITY_ORDER:
        a = analyze.get(name)
        e = ensemble[name].seconds if name in ensemble else None
        prep = ensemble[name].preparing_s if name in ensemble else None
        rows.append(f"| {name} (prepare + predict + post-process) | {_fmt(a)} | {_fps(n, a)} | {_fmt(e)} | "
                    f"{_fps(n, e)} | {_fmt(prep)} |")
    if r.analyze:
        startup = r.analyze.wall_s - float(r.analyze.document.get("seconds") or 0.0)
        rows.append(f"| analyze: interpreter + TensorFlow import | {startup:.1f} | | | | |")
    if r.ensemble:
        busiest = max((t.seconds for t in r.ensemble.modalities.values()), default=0.0)
        rows.append(f"| ensemble: upload {r.ensemble.upload_s:.1f} s + queueing + fusion + polling (wall - slowest "
                    f"modality) | | | {r.ensemble.wall_s - busiest:.1f} | | |")
    return rows


def memory_table(report: Report) -> list[str]:
    """Peak memory of every process at every length, and the CPU each spent during the longest job."""
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
        for p in r.ensemble.processes if r.ensemble else []:
            label = f"ensemble: {p.label}"
            table[label] = max(table.get(label, 0.0), p.peak_rss_mib)
            if r is longest:
                cpu[label] = cpu.get(label, 0.0) + r.ensemble.job_cpu_s.get(p.pid, 0.0)
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
        if r.slow and r.analyze:
            pairs.append(("analyze, default settings vs slow settings (every frame, batch 1)", r.analyze, r.slow))
        if r.ensemble and r.analyze:
            pairs.append(("ensemble vs analyze", r.ensemble, r.analyze))
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
             "### Summary", "", *summary_table(report), ""]
    main = max(report.results, key=lambda x: x.minutes)
    lines += ["### Stages", "", *stage_table(main), ""]
    lines += ["### Memory and CPU of each process", "",
              "Peak resident memory (VmHWM of each ensemble process, ru_maxrss of `analyze`): the ensemble is "
              "started afresh for each length, so each peak belongs to that video (and an 8 s warm-up job).", "",
              *memory_table(report), ""]
    lines += ["### Fused result against the slow settings", "", *equivalence_table(report), ""]
    if report.notes:
        lines += ["### Notes", "", *[f"- {note}" for note in report.notes], ""]
    return "\n".join(lines)


def write_block(path: Path, block: str, preamble: Sequence[str], *, key: str) -> None:
    """Replace the generated block ``key`` of ``path`` (appended when absent; the file made with ``preamble``).

    One block per kind of run (``models``: the models directory; ``paper-size models``), so a run of one
    kind never erases the latest table of the other, nor the hand-written text around them.
    """
    start, end = BLOCK_START.format(key=key), BLOCK_END.format(key=key)
    text = path.read_text() if path.is_file() else "\n".join(preamble) + "\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"
    else:
        text = f"{text.rstrip()}\n\n{start}\n{block}\n{end}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
