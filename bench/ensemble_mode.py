"""Mode (b) of the benchmark: the local ensemble (``empathy up``), driven through the gateway's REST API.

A fresh ensemble is started for each measured video so that every process's peak memory (``VmHWM``)
belongs to that video alone, which is what shows whether memory grows with video length. A short
warm-up job runs first: a deployed service is warm (workers have connected to their model servers and
loaded dlib's models), and the first-call costs are not what users of a running service wait for.
The measured job is uploaded with ``POST /v1/jobs`` exactly as ``empathy submit --wait`` does, and its
status is polled every 0.1 s to see when each modality moved from preparing to predicting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.procstat import ProcessSample, TreeMemory, descendants, sample_tree
from shared.ports import free_port

POLL_S = 0.1
FINAL_JOB_STATES = ("done", "failed")


@dataclass
class ModalityTiming:
    seconds: float = 0.0  # the worker's own time for this modality (run_modality)
    preparing_s: float | None = None  # first seen preparing -> first seen predicting (polled: +-0.1 s)
    finished_at_s: float | None = None  # since the upload started


@dataclass
class EnsembleRun:
    wall_s: float  # upload start -> job done (what `empathy submit --wait` waits)
    upload_s: float  # the POST alone (upload + probe + dispatch)
    cpu_s: float  # CPU time of the whole process tree during the job
    processes: list[ProcessSample]
    job_cpu_s: dict[int, float] = field(default_factory=dict)  # pid -> CPU time spent during the job
    modalities: dict[str, ModalityTiming] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)
    startup_s: float = 0.0  # `empathy up` until ready (not part of wall_s)
    total_pss_mib: float = 0.0  # largest total PSS of the whole tree seen during the job (sampled every 1 s)
    total_rss_mib: float = 0.0  # the same as a sum of RSS (counts shared pages once per process)

    @property
    def sum_of_peaks_mib(self) -> float:
        """Sum of every process's own peak (VmHWM): an upper bound, the peaks need not coincide."""
        return sum(p.peak_rss_mib for p in self.processes)

    def valence(self) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in self.document["valence"]], dtype=np.float64)


class LocalEnsemble:
    """``empathy up`` as a child process (auth off, free ports, its own storage), stopped like Ctrl-C."""

    def __init__(self, models_dir: Path, workdir: Path, *, env: dict[str, str] | None = None) -> None:
        self.models_dir = models_dir
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "EMPATHY_AUTH": "off", "EMPATHY_LOG_LEVEL": "WARNING", **(env or {})}
        self.env.pop("EMPATHY_REDIS_URL", None)  # its own redis-server, never a shared one
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout_s: float = 300.0) -> float:
        """Start and wait for ``/readyz``; returns the seconds it took."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "cli.main", "up", "--port", str(self.port), "--base-port", "0",
                "--models-dir", str(self.models_dir), "--storage-dir", str(self.workdir / "storage"),
                "--ready-timeout", str(timeout_s)]
        self._log = (self.workdir / "ensemble.log").open("wb")
        started = time.monotonic()
        self.process = subprocess.Popen(argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"empathy up exited with {self.process.returncode}; see {self.workdir}/ensemble.log")
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the ensemble was not ready within {timeout_s} s; see {self.workdir}/ensemble.log")

    def stop(self) -> None:
        """SIGINT (the launcher stops its children in order); anything left after a minute is killed by pid."""
        if self.process is None:
            return
        left = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in left:  # children run in sessions of their own: none may outlive the benchmark
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
        self.process = None

    def __enter__(self) -> LocalEnsemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one job -----------------------------------------------------------------------------------------
    def submit(self, video: Path, *, subject: int, transcript: Path | None) -> tuple[str, float]:
        """POST the video (and transcript); returns the job id and the seconds the upload took."""
        started = time.monotonic()
        with video.open("rb") as video_file:
            files: dict[str, Any] = {"video": (video.name, video_file, "video/mp4")}
            if transcript is not None:
                files["transcript"] = (transcript.name, transcript.read_bytes(), "application/json")
            response = requests.post(f"{self.url}/v1/jobs", files=files, data={"subject": str(subject)}, timeout=600)
        if response.status_code != 202:
            raise RuntimeError(f"upload refused: {response.status_code} {response.text[:500]}")
        return response.json()["id"], time.monotonic() - started

    def follow(self, job_id: str, started: float, timeout_s: float) -> tuple[dict[str, Any], dict[str, ModalityTiming]]:
        """Poll the job until it ends; the final status and when each modality changed stage."""
        first_seen: dict[tuple[str, str], float] = {}
        while True:
            status = requests.get(f"{self.url}/v1/jobs/{job_id}", timeout=30).json()
            now = time.monotonic() - started
            for name, entry in status.get("modalities", {}).items():
                first_seen.setdefault((name, entry["status"]), now)
            if status["state"] in FINAL_JOB_STATES:
                break
            if now > timeout_s:
                raise RuntimeError(f"job {job_id} not finished after {timeout_s} s: {json.dumps(status)[:500]}")
            time.sleep(POLL_S)
        timings: dict[str, ModalityTiming] = {}
        for name, entry in status.get("modalities", {}).items():
            prepared = first_seen.get((name, "predicting"))
            began = min((t for (m, s), t in first_seen.items() if m == name and s != "queued"), default=None)
            timings[name] = ModalityTiming(
                seconds=float(entry.get("seconds", 0.0)),
                preparing_s=None if prepared is None or began is None else prepared - began,
                finished_at_s=first_seen.get((name, entry["status"])))
        return status, timings

    def run_job(self, video: Path, *, subject: int, transcript: Path | None, timeout_s: float = 3600.0) -> EnsembleRun:
        assert self.process is not None, "start the ensemble first"
        before = {p.pid: p.cpu_s for p in sample_tree(self.process.pid)}
        started = time.monotonic()
        with TreeMemory(self.process.pid) as memory:
            job_id, upload_s = self.submit(video, subject=subject, transcript=transcript)
            status, timings = self.follow(job_id, started, timeout_s)
        wall = time.monotonic() - started
        processes = sample_tree(self.process.pid)
        job_cpu = {p.pid: p.cpu_s - before.get(p.pid, 0.0) for p in processes}
        if status["state"] != "done":
            raise RuntimeError(f"job {job_id} ended {status['state']}: {json.dumps(status)[:1000]}")
        document = requests.get(f"{self.url}/v1/jobs/{job_id}/result", timeout=60).json()
        return EnsembleRun(wall_s=wall, upload_s=upload_s, cpu_s=sum(job_cpu.values()), processes=processes,
                           job_cpu_s=job_cpu, modalities=timings, document=document,
                           total_pss_mib=memory.peak_pss_mib, total_rss_mib=memory.peak_rss_mib)

    def run_concurrent(self, video: Path, jobs: int, *, subject: int, transcript: Path | None,
                       timeout_s: float = 3600.0) -> Throughput:
        """``jobs`` uploads at once; the time until the last is done gives the ensemble's jobs per hour."""
        assert self.process is not None, "start the ensemble first"
        before = {p.pid: p.cpu_s for p in sample_tree(self.process.pid)}
        started = time.monotonic()
        with TreeMemory(self.process.pid) as memory:
            ids = [self.submit(video, subject=subject, transcript=transcript)[0] for _ in range(jobs)]
            for job_id in ids:
                status, _ = self.follow(job_id, started, timeout_s)
                if status["state"] != "done":
                    raise RuntimeError(f"job {job_id} ended {status['state']}: {json.dumps(status)[:1000]}")
        wall = time.monotonic() - started
        cpu = sum(p.cpu_s - before.get(p.pid, 0.0) for p in sample_tree(self.process.pid))
        return Throughput(jobs=jobs, wall_s=wall, cpu_s=cpu, total_pss_mib=memory.peak_pss_mib)


@dataclass
class Throughput:
    """Several jobs submitted together to one ensemble."""

    jobs: int
    wall_s: float  # first upload -> last job done
    cpu_s: float  # CPU time of the whole tree meanwhile
    total_pss_mib: float  # largest total memory of the tree meanwhile

    @property
    def jobs_per_hour(self) -> float:
        return self.jobs * 3600.0 / self.wall_s


@dataclass
class EnsembleSession:
    """What one fresh ensemble measured on one video."""

    asr: EnsembleRun | None = None  # speech recognised from the audio (a real job)
    transcript: EnsembleRun | None = None  # the clip's word timings given
    throughput: list[Throughput] = field(default_factory=list)
    startup_s: float = 0.0

    @property
    def main(self) -> EnsembleRun:
        run = self.asr or self.transcript
        assert run is not None, "no job was measured"
        return run


def run_ensemble(video: Path, *, warmup: Path, models_dir: Path, workdir: Path, subject: int,
                 transcript: Path | None, with_asr: bool = True, concurrency: tuple[int, ...] = ()) -> EnsembleSession:
    """Start a fresh ensemble, run the warm-up job (with ASR, which loads the speech model), then measure
    ``video`` with its transcript given (when ``transcript``), with speech recognition (``with_asr``) and
    with ``concurrency`` jobs at once (each > 1; with ASR when ``with_asr``); always stops the ensemble."""
    session = EnsembleSession()
    with LocalEnsemble(models_dir, workdir) as ensemble:
        session.startup_s = ensemble.start()
        ensemble.run_job(warmup, subject=subject, transcript=None)
        if transcript is not None:
            session.transcript = ensemble.run_job(video, subject=subject, transcript=transcript)
        if with_asr:
            session.asr = ensemble.run_job(video, subject=subject, transcript=None)
        for jobs in concurrency:
            if jobs > 1:
                session.throughput.append(ensemble.run_concurrent(
                    video, jobs, subject=subject, transcript=None if with_asr else transcript))
    return session
