"""Celery with real parts: a real redis-server, real worker subprocesses started by the services' entry point.

Two fusion workers consume the one ``fusion`` queue: both must take tasks (that is how ``--scale`` works),
and each runs the real fusion task on series stored on the shared storage directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import redis

from jobs.files import JobFiles
from jobs.request import JobRequest
from jobs.storage.local import LocalStorage
from jobs.store import DONE, JobStore
from services.celery_app import FUSE_TASK, create_app
from shared.values import ModalityResult
from tests.ensemble_support import ensemble_env, environment, redis_db, start_worker, stop, wait_for

N_JOBS = 10


def _stored_job(store: JobStore, storage: Path, job_id: str, n_frames: int) -> list[dict[str, str]]:
    """A job whose three modality series are already on the storage volume (as modality workers leave it)."""
    store.create(job_id, JobRequest(subject=0, modalities=("audio", "text", "body")), filename="clip.mp4", video="")
    files = JobFiles(LocalStorage(storage), job_id)
    rng = np.random.default_rng(int(job_id[:6], 16))
    outcomes = []
    for name in ("audio", "text", "body"):
        values = np.sin(np.arange(n_frames) / 200.0) + 0.3 * rng.standard_normal(n_frames)
        series = files.save_series(ModalityResult(name, values, np.zeros(n_frames, bool), "ok"))
        outcomes.append({"modality": name, "status": "ok", "series": series})
    return outcomes


@pytest.mark.slow
def test_two_workers_on_one_queue_both_take_tasks(redis_url: str, tmp_path: Path) -> None:
    url = redis_db(redis_url, 4)
    redis.Redis.from_url(url).flushdb()
    env = ensemble_env(url, tmp_path / "storage", tmp_path / "models")
    with environment(env) as settings:
        app = create_app(settings)
        store = JobStore.from_url(url, ttl_s=600)
        workers = [start_worker("fusion", env, name=f"fusion-{k}", log_path=tmp_path / f"worker-{k}.log")
                   for k in (1, 2)]
        try:
            def both_ready() -> bool:
                assert all(w.poll() is None for w in workers), "a worker exited"
                return len(app.control.ping(timeout=0.5) or []) == 2

            wait_for(both_ready, timeout=60, what="two fusion workers answering ping")
            jobs = {}
            for k in range(N_JOBS):
                job_id = f"{k:02d}" + "ab" * 15
                jobs[job_id] = app.send_task(FUSE_TASK, args=[_stored_job(store, settings.storage_dir, job_id, 25 * 120)],
                                             kwargs={"job_id": job_id})
            wait_for(lambda: all(store.raw(j).get("state") == DONE for j in jobs), timeout=60,
                     what="every job fused")
            hosts = {store.raw(j)["fusion.worker"] for j in jobs}
            assert {h.split("@")[0] for h in hosts} == {"fusion-1", "fusion-2"}, hosts
            for job_id, result in jobs.items():
                outcome = result.get(timeout=10, interval=0.05)
                assert outcome["state"] == "done"
                document = JobFiles(LocalStorage(settings.storage_dir), job_id).read_result()
                assert document["n_frames"] == 25 * 120 and document["fusion"]["used"] == ["audio", "text", "body"]
        finally:
            for worker in workers:
                stop(worker)
        logs = "".join((tmp_path / f"worker-{k}.log").read_text() for k in (1, 2))
        assert "Traceback" not in logs, logs[-3000:]


@pytest.mark.parametrize("modality", ["audio", "landmarks"])
def test_analysis_tasks_are_routed_to_their_modality_queue(redis_url: str, tmp_path: Path, modality: str) -> None:
    url = redis_db(redis_url, 5)
    broker = redis.Redis.from_url(url)
    broker.flushdb()
    with environment(ensemble_env(url, tmp_path / "storage", tmp_path / "models")) as settings:
        app = create_app(settings)
        app.send_task("empathy.analyze_modality", kwargs={"job_id": "0" * 32, "modality": modality})
        assert broker.llen(modality) == 1
        assert sum(broker.llen(q) for q in ("audio", "text", "face", "landmarks", "body", "fusion")) == 1
        with pytest.raises(ValueError, match="needs a modality"):
            app.send_task("empathy.analyze_modality", kwargs={"job_id": "0" * 32, "modality": "smell"})
