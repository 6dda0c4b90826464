"""The whole ensemble, every part real: ``empathy up`` starts our gRPC model server (one, for the five models), the
five modality workers and the fusion worker (Celery, real subprocesses) and the gateway under gunicorn,
on a real redis-server. A held-out synthetic video (a story no model trained on) goes in over HTTP with
``empathy submit --wait``; the result must cover every frame, carry every modality, and follow the ground
truth. ``empathy analyze`` on the same video, in one process, must give the same curve.

Models: the session's ``ensemble_models`` (tests/conftest.py): the bundled models when ``make models`` built
them (``make test`` does), else tiny versions of the five architectures trained once per session on the
session's synthetic set through the ordinary training API; EMPATHY_TEST_MODELS names a directory to reuse.

The clips are 20 s long. The ensemble runs with an explicit final cut-off (EMPATHY_FUSION_CUTOFF_HZ=0.1,
which the clip-length bound raises to 0.15 Hz: 3 cycles over 20 s) and the validation-CCC weights
(EMPATHY_FUSION_WEIGHTS=ccc), both documented settings; the fusion model fit by the bootstrap supplies the
calibrated band.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shared.ccc import ccc
from shared.data import read_labels
from shared.settings import MODALITIES
from tests.ensemble_support import API_TOKENS, REPO, api_keys_env, redis_db, start_up, stop, wait_for

pytestmark = pytest.mark.slow

FUSED_CCC_THRESHOLD = 0.3
DURATION_S = 20.0

@pytest.fixture(scope="session")
def held_out_clip(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from synthetic import generate_clip

    # Story 7: held out by the tiny test models (Stories 1-3) and by the bundled ones (1-6) alike
    return generate_clip(tmp_path_factory.mktemp("held_out"), subject=1, story=7, duration_s=DURATION_S,
                         width=640, height=360, seed=7)


def _get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_TOKENS['alice']}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""  # not listening (yet)


def test_the_ensemble_end_to_end(ensemble_models: Path, held_out_clip, redis_url: str,  # noqa: ANN001
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.ports import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMPATHY_FUSION_WEIGHTS": "ccc",
           "EMPATHY_FUSION_CUTOFF_HZ": "0.1", **api_keys_env()}
    log_path = tmp_path / "up.log"
    launcher = start_up(port, redis_url=redis_db(redis_url, 6), models_dir=ensemble_models,
                        storage_dir=tmp_path / "storage", env=env, log_path=log_path, cwd=tmp_path)
    try:
        wait_for(lambda: launcher.poll() is None and _get(f"{url}/readyz")[0] == 200, timeout=300, interval=1.0,
                 what="the ensemble's /readyz")
        ready = json.loads(_get(f"{url}/readyz")[1])
        assert all(ready["checks"][f"model:{m}"]["ready"] for m in MODALITIES)

        from cli.submit import main as submit_main

        started = time.monotonic()
        out = tmp_path / "ensemble.csv"
        code = submit_main([str(held_out_clip.video), "--gateway", url, "--api-key", API_TOKENS["alice"],
                            "--subject", "1", "--wait", "--poll", "0.5", "--timeout", "900", "--out", str(out)])
        job_seconds = time.monotonic() - started
        assert code == 0, log_path.read_text()[-5000:]

        lines = out.read_text().splitlines()
        assert lines[0].split(",") == ["valence", "agreement", "band_low", "band_high", *MODALITIES]
        n_frames = int(DURATION_S * 25)
        assert len(lines) == 1 + n_frames
        rows = np.array([[float(v) if v else np.nan for v in line.split(",")] for line in lines[1:]])
        labels = read_labels(held_out_clip.labels)
        fused = rows[:, 0]
        assert np.isfinite(fused).all()
        assert ((rows[:, 1] >= 0) & (rows[:, 1] <= 1)).all()
        per_modality = {m: ccc(labels, np.nan_to_num(rows[:, 4 + i], nan=float(np.nanmean(rows[:, 4 + i]))))
                        for i, m in enumerate(MODALITIES)}
        fused_ccc = ccc(labels, fused)
        summary = (f"ensemble job {job_seconds:.1f} s; fused CCC {fused_ccc:.3f}; per modality "
                   + ", ".join(f"{m} {c:.3f}" for m, c in per_modality.items()))
        (tmp_path / "summary.txt").write_text(summary)
        for i, name in enumerate(MODALITIES):
            assert np.isfinite(rows[:, 4 + i]).any(), f"{name} column is empty"
        assert (rows[:, 2] <= fused).all() and (rows[:, 3] >= fused).all()  # the band around the fused curve
        assert (rows[:, 3] - rows[:, 2] > 0).all() and rows[:, 2].min() >= -1 and rows[:, 3].max() <= 1
        assert fused_ccc > FUSED_CCC_THRESHOLD, summary

        # the JSON result and the plot of the same job
        job_id = capsys.readouterr().out.split("job ", 1)[1].split()[0]
        status, body = _get(f"{url}/v1/jobs/{job_id}/result")
        document = json.loads(body)
        assert status == 200 and document["n_frames"] == n_frames and document["subject"] == 1
        assert all(document["modalities"][m]["status"] == "ok" for m in MODALITIES), document["modalities"]
        assert document["fusion"]["weights_spec"] == "ccc" and document["fusion"]["cutoff_requested_hz"] == 0.1
        assert document["fusion"]["cutoff_hz"] == pytest.approx(0.15)  # 3 cycles over the 20 s clip
        assert document["fusion"]["model_version"] == 1 and document["band"]["coverage"] == 0.8
        status, png = _get(f"{url}/v1/jobs/{job_id}/plot.png")
        assert status == 200 and png[:4] == b"\x89PNG"
        (tmp_path / "ensemble.png").write_bytes(png)

        # the embedded mode (same pipeline, models in-process) gives the same curve
        from cli.analyze import main as analyze_main

        local = tmp_path / "local.csv"
        os.environ["EMPATHY_FUSION_WEIGHTS"], os.environ["EMPATHY_FUSION_CUTOFF_HZ"] = "ccc", "0.1"
        try:
            from shared.settings import get_settings

            get_settings.cache_clear()
            assert analyze_main([str(held_out_clip.video), "--subject", "1", "--models-dir", str(ensemble_models),
                                 "--out", str(local), "--no-build"]) == 0
        finally:
            del os.environ["EMPATHY_FUSION_WEIGHTS"], os.environ["EMPATHY_FUSION_CUTOFF_HZ"]
            get_settings.cache_clear()
        local_rows = np.array([[float(v) if v else np.nan for v in line.split(",")]
                               for line in local.read_text().splitlines()[1:]])
        assert np.allclose(local_rows[:, 0], fused, atol=1e-3)
    finally:
        stop(launcher, timeout=120, sig=signal.SIGINT)  # what Ctrl-C does
    assert launcher.returncode == 0, log_path.read_text()[-5000:]


# --- `empathy up` at its defaults: smoke test, memory, Ctrl-C, chaos ---------------------------------------
def _clean_env() -> dict[str, str]:
    """The test's environment without any EMPATHY_* variable: every setting at its default."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_")}, "PYTHONPATH": str(REPO)}


class Up:
    """``empathy up`` as a user runs it; only ports and directories are chosen (free / temporary)."""

    def __init__(self, models_dir: Path, workdir: Path) -> None:
        from shared.ports import free_port

        self.port, self.model_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "up.log"
        self.out_path = workdir / "up.out"
        with self.log_path.open("wb") as log, self.out_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "up", "--port", str(self.port), "--base-port",
                 str(self.model_port), "--models-dir", str(models_dir), "--storage-dir", str(workdir / "storage")],
                cwd=workdir, env=_clean_env(), stdout=out, stderr=log)
        self.key = ""
        self.seen: set[int] = set()

    def wait_ready(self, timeout: float = 300.0) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.log_path.read_text()[-5000:]
            self.remember()
            return "export EMPATHY_API_KEY=" in self.out_path.read_text()

        wait_for(ready, timeout=timeout, interval=1.0, what="empathy up ready")
        self.key = self.out_path.read_text().split("export EMPATHY_API_KEY=", 1)[1].split()[0]

    def remember(self) -> None:
        """Every process ever seen under the launcher: Ctrl-C must leave none of them."""
        from bench.procstat import descendants

        self.seen.update(descendants(self.process.pid))

    def rss_mib(self) -> float:
        from bench.procstat import descendants

        total = 0
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        return total / 1024.0

    def ctrl_c(self) -> int:
        self.remember()
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def left_behind(self) -> list[int]:
        def alive(pid: int) -> bool:
            try:
                return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False

        return sorted(pid for pid in self.seen if alive(pid))


def _submit_and_wait(up: Up, video: Path, *, timeout: float, retry_until: float | None = None) -> dict:
    """Upload (retried on connection errors and 503, with an idempotency key) and follow the job to its end."""
    import uuid

    import requests

    headers = {"Authorization": f"Bearer {up.key}"}
    idempotency = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    job_id = None
    while job_id is None:
        assert time.monotonic() < deadline, "upload never accepted"
        try:
            with video.open("rb") as fh:
                response = requests.post(f"{up.url}/v1/jobs", files={"video": (video.name, fh)},
                                         data={"subject": "1"}, timeout=30,
                                         headers={**headers, "Idempotency-Key": idempotency})
            if response.status_code in (200, 202):
                job_id = response.json()["id"]
            else:
                assert response.status_code in (502, 503, 504), response.text
        except requests.RequestException:
            pass
        time.sleep(0.5)
    while True:
        assert time.monotonic() < deadline, f"job {job_id} not finished in {timeout} s"
        try:
            response = requests.get(f"{up.url}/v1/jobs/{job_id}", headers=headers, timeout=30)
            if response.status_code == 200 and response.json()["state"] in ("done", "failed"):
                status = response.json()
                csv = requests.get(f"{up.url}/v1/jobs/{job_id}/result?format=csv", headers=headers, timeout=30)
                status["csv"] = csv.text if csv.status_code == 200 else ""
                return status
        except requests.RequestException:
            pass
        time.sleep(1.0)


def _complete_rows(csv: str, n_frames: int) -> bool:
    lines = csv.splitlines()
    return (len(lines) == 1 + n_frames and lines[0].split(",")[:2] == ["valence", "agreement"]
            and all(line.split(",")[0] not in ("", "nan") for line in lines[1:]))


def test_empathy_up_at_its_defaults_analyses_a_clip_and_ctrl_c_leaves_nothing(
        ensemble_models: Path, held_out_clip, tmp_path: Path) -> None:  # noqa: ANN001
    up = Up(ensemble_models, tmp_path)
    try:
        up.wait_ready()
        idle_mib = up.rss_mib()
        job = _submit_and_wait(up, held_out_clip.video, timeout=900)
        busy_mib = up.rss_mib()
        assert job["state"] == "done" and job["degraded"] is False, json.dumps({k: v for k, v in job.items() if k != "csv"})
        assert _complete_rows(job["csv"], int(DURATION_S * 25))
        (tmp_path / "memory.txt").write_text(f"idle {idle_mib:.0f} MiB, after a job {busy_mib:.0f} MiB")
        print(f"empathy up RSS: idle {idle_mib:.0f} MiB, after a job {busy_mib:.0f} MiB")
    finally:
        code = up.ctrl_c()
    log = up.log_path.read_text()
    assert code == 0, log[-5000:]
    assert "Traceback" not in log, log[-5000:]  # at the default log level, with nothing killed: no error at all
    assert up.left_behind() == [], up.left_behind()
    assert len(up.seen) >= 8  # redis, the model server, six workers, gunicorn (+ its worker)


CHAOS_JOBS = 10
CHAOS_DURATION_S = 4.0


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from synthetic import generate_clip

    return generate_clip(tmp_path_factory.mktemp("chaos_clip"), subject=1, story=5, duration_s=CHAOS_DURATION_S,
                         width=320, height=180, seed=3)


def test_chaos_a_random_child_killed_every_few_seconds_loses_no_job(
        ensemble_models: Path, short_clip, tmp_path: Path) -> None:  # noqa: ANN001
    """While 10 jobs run, SIGKILL one of `empathy up`'s children (Redis, the model server, a worker, the
    gateway) at random every 5-8 s: every job finishes done with every row, and Ctrl-C leaves nothing."""
    import random
    import threading

    from bench.procstat import label_of

    rng = random.Random(11)
    up = Up(ensemble_models, tmp_path)
    results: list[dict] = []
    kills: list[str] = []
    try:
        up.wait_ready()
        errors: list[BaseException] = []

        def client() -> None:
            try:
                results.append(_submit_and_wait(up, short_clip.video, timeout=1500))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        clients = [threading.Thread(target=client, daemon=True) for _ in range(CHAOS_JOBS)]
        for thread in clients:
            thread.start()
            time.sleep(0.3)
        while any(t.is_alive() for t in clients) and len(kills) < 15:
            time.sleep(rng.uniform(5.0, 8.0))
            up.remember()
            children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                        and _parent(int(p.name)) == up.process.pid]
            if children:
                victim = rng.choice(children)
                kills.append(label_of(victim))
                os.kill(victim, signal.SIGKILL)
        for thread in clients:
            thread.join(timeout=1500)
        assert not errors, errors
    finally:
        code = up.ctrl_c()
    summary = (f"{len(kills)} kills ({', '.join(kills)}); states {[r['state'] for r in results]}; "
               f"degraded {sum(bool(r.get('degraded')) for r in results)}")
    print("chaos:", summary)
    (tmp_path / "chaos.txt").write_text(summary)
    assert len(results) == CHAOS_JOBS and all(r["state"] == "done" for r in results), summary
    assert all(_complete_rows(r["csv"], int(CHAOS_DURATION_S * 25)) for r in results), summary
    assert code == 0 and up.left_behind() == [], (code, up.left_behind())


def _parent(pid: int) -> int | None:
    from bench.procstat import parent_of

    return parent_of(pid)
