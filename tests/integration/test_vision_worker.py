"""The optional decode-once vision worker (EMPATHY_VISION_WORKER): one task decodes the video for face,
landmarks and body, and stores exactly what the three modality workers store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import redis

from jobs.store import JobStore
from services.celery_app import VISION_QUEUE, VISION_TASK, route_task, vision_together
from shared.settings import Settings
from tests.ensemble_support import redis_db
from tests.integration.test_ensemble_faults import (  # noqa: F401 - fixtures
    base_env,
    final_state,
    gateway,
    media,
    model_server,
    models,
    running_workers,
    submit,
)


def test_only_jobs_with_two_vision_modalities_use_the_vision_worker() -> None:
    on, off = Settings(vision_worker="on"), Settings()
    assert vision_together(["audio", "face", "landmarks", "body"], on) == ["face", "landmarks", "body"]
    assert vision_together(["audio", "landmarks", "body"], on) == ["landmarks", "body"]
    assert vision_together(["audio", "body"], on) == []  # one vision modality: its own queue
    assert vision_together(["face", "landmarks", "body"], off) == []  # the default: one task per modality
    assert route_task(VISION_TASK, (), {}, {}) == {"queue": VISION_QUEUE}


def _valence(document: dict, name: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in document["modalities"][name]["valence"]], dtype=np.float64)


@pytest.mark.slow
def test_the_vision_worker_stores_what_the_modality_workers_store(redis_url: str, tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    video = request.getfixturevalue("media")["face_silent"]  # 4 s, a face in the first 2 s
    url = redis_db(redis_url, 11)
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, tmp_path, request.getfixturevalue("models"), request.getfixturevalue("model_server"))
    documents = {}
    for label, extra, queues in (("separate", {}, ("landmarks", "body", "fusion")),
                                 ("vision", {"EMPATHY_VISION_WORKER": "on"}, ("vision", "fusion"))):
        folder = tmp_path / label
        folder.mkdir()
        run_env = {**env, **extra}
        with running_workers(folder, run_env, [(q, q, {}) for q in queues]), gateway(run_env) as client:
            job_id = submit(client, video, "landmarks,body", subject="1")
            job = final_state(client, job_id)
            assert job["state"] == "done", job
            assert {name: entry["status"] for name, entry in job["modalities"].items()} == {"landmarks": "ok",
                                                                                              "body": "ok"}
            raw = JobStore.from_url(url, ttl_s=600).raw(job_id)
            assert raw["landmarks.worker"].startswith(f"{queues[0] if label == 'vision' else 'landmarks'}@")
            documents[label] = client.get(f"/v1/jobs/{job_id}/result").get_json()
    for name in ("landmarks", "body"):
        np.testing.assert_allclose(_valence(documents["vision"], name), _valence(documents["separate"], name),
                                   atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(np.array(documents["vision"]["valence"], dtype=float),
                               np.array(documents["separate"]["valence"], dtype=float), atol=1e-9)
