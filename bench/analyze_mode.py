"""Mode (a) of the benchmark: ``empathy analyze`` in a process of its own, as a user runs it.

The command runs in a child process so that its wall time includes everything a user waits for
(interpreter and TensorFlow start, model loading) and so that its peak memory is that process's alone:
``os.wait4`` returns the child's ``ru_maxrss`` (peak resident set size) and CPU times, which cannot be
read from inside a process that shares the benchmark's own memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class AnalyzeRun:
    wall_s: float
    cpu_s: float  # user + system CPU time of the process
    peak_rss_mib: float
    document: dict[str, Any]  # the result document (shared.results.build_document) the command wrote

    def modality_seconds(self) -> dict[str, float]:
        return {name: float(entry["seconds"]) for name, entry in self.document["modalities"].items()}

    def valence(self) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in self.document["valence"]], dtype=np.float64)


def run_analyze(video: Path, *, models_dir: Path, workdir: Path, subject: int, transcript: Path | None,
                env: dict[str, str] | None = None, timeout_s: float = 3600.0) -> AnalyzeRun:
    """Run ``empathy analyze`` on ``video``; ``env`` adds EMPATHY_* settings (e.g. the slow settings)."""
    workdir.mkdir(parents=True, exist_ok=True)
    document_path = workdir / "analyze.json"
    argv = [sys.executable, "-m", "cli.main", "analyze", str(video), "--subject", str(subject),
            "--models-dir", str(models_dir), "--no-build", "--out", str(workdir / "analyze.csv"),
            "--json", str(document_path)]
    if transcript is not None:
        argv += ["--transcript", str(transcript)]
    child_env = {**os.environ, "EMPATHY_LOG_LEVEL": "WARNING", **(env or {})}
    log_path = workdir / "analyze.log"
    with log_path.open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + timeout_s
        while True:  # wait4 with a deadline: poll without reaping until the child is done
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"empathy analyze exited with {process.returncode} after {wall:.1f} s; log tail:\n{tail}")
    return AnalyzeRun(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mib=usage.ru_maxrss / 1024.0,
                      document=json.loads(document_path.read_text()))
