"""The benchmark's own parts: the floor of a real job, process memory sampling, the report's tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.ensemble_mode import EnsembleRun, EnsembleSession, Throughput
from bench.machine import describe
from bench.procstat import ProcessSample, TreeMemory, memory_now_mib
from bench.report import DecodeFloor, JobFloor, LengthResult, Report, render, write_block
from bench.run import build_parser
from shared.data import discover
from tests import REPO

ROOT = REPO


def test_bench_help_lists_the_real_job_options() -> None:
    done = subprocess.run([sys.executable, "-m", "cli", "bench", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0
    for option in ("--no-asr", "--no-transcript-run", "--concurrency"):
        assert option in done.stdout
    assert build_parser().parse_args([]).concurrency == [1, 2, 4]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--concurrency", "0"])


def test_tree_memory_sees_a_child_that_allocates() -> None:
    """The whole-ensemble column adds up every process of the tree, children included."""
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
                              "time.sleep(3)"])
    try:
        with TreeMemory(os.getpid(), interval_s=0.2) as memory:
            child.wait(timeout=60)
    finally:
        child.kill()
    assert memory.peak_pss_mib > 200 and memory.peak_rss_mib >= memory.peak_pss_mib
    assert memory_now_mib(os.getpid())[0] > 0 and memory_now_mib(2**22 + 12345) == (0.0, 0.0)


def _run(wall: float, cpu: float, pss: float) -> EnsembleRun:
    processes = [ProcessSample(pid=1, parent=0, label="model server", peak_rss_mib=800.0, cpu_s=1.0),
                 ProcessSample(pid=2, parent=1, label="services.text", peak_rss_mib=300.0, cpu_s=cpu - 1.0)]
    document = {"valence": [0.1, 0.2], "modalities": {"text": {"valence": [0.0, 0.1], "seconds": 1.0}}}
    return EnsembleRun(wall_s=wall, upload_s=0.1, cpu_s=cpu, processes=processes, job_cpu_s={1: 1.0, 2: cpu - 1.0},
                       document=document, total_pss_mib=pss, total_rss_mib=pss * 1.5)


def test_report_states_the_floor_multiple_memory_and_jobs_per_hour(tmp_path: Path) -> None:
    session = EnsembleSession(asr=_run(30.0, 60.0, 2500.0), transcript=_run(25.0, 50.0, 2400.0),
                              throughput=[Throughput(jobs=2, wall_s=50.0, cpu_s=110.0, total_pss_mib=2700.0)])
    result = LengthResult(minutes=5, duration_s=300.0, floor=DecodeFloor(7500, 4.0, 3.0, 0.2),
                          job_floor=JobFloor(decode_cpu_s=8.0, asr_cpu_s=22.0, wall_s=31.0, words=700),
                          ensemble=session)
    report = Report(title="t", machine=describe(ROOT), command="empathy bench", models_dir="models", settings="s",
                    subject_std=0.5, results=[result])
    block = render(report)
    assert "| ensemble, with ASR | 5 min | 30.0 | 0.100 | 60.0 | 2.00x | 2500 | 1100 | 800 |" in block
    assert "| ensemble, transcript given | 5 min | 25.0 |" in block
    assert "| 5 min | 8.0 | 22.0 | 30.0 | 31.0 | 700 |" in block  # the floor
    assert "| 1 | 30.0 | 120 | 60.0 | 2500 |" in block and "| 2 | 50.0 | 144 | 55.0 | 2700 |" in block
    assert "CPU 2.00x the floor (target <= 1.5x): MISSED" in block
    assert "2500 MiB PSS at its peak (target <= 3072 MiB): met" in block
    out = tmp_path / "b.md"
    write_block(out, block, ["# B"], key="models")
    write_block(out, block.replace("30.0", "31.0"), ["# B"], key="models")  # replaced, not appended
    assert out.read_text().count("### Summary") == 1


@pytest.mark.slow
def test_floor_of_a_real_job_decodes_and_recognises_on_one_core(synthetic_dataset: Path, tmp_path: Path) -> None:
    clip = discover(synthetic_dataset)[0]
    env = {**os.environ, "EMPATHY_WHISPER_MODEL_DIR": str(tmp_path / "whisper-base"), "EMPATHY_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "bench.floor", str(clip.video)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    floor = json.loads(done.stdout.strip().splitlines()[-1])
    assert floor["frames"] == 500 and floor["words"] > 10
    assert 0 < floor["decode_cpu_s"] and 0 < floor["asr_cpu_s"]
    assert np.isfinite(floor["asr_wall_s"])
