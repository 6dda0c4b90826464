"""Faults injected into small local ensembles, every part real.

Each test runs real Celery worker subprocesses (the services' entry point) on a real redis-server, our
real model server (in this process, on free ports) serving tiny untrained models of the modalities
involved, and the gateway app (in this process) with API keys. The models are tiny but real SavedModels
whose inputs are exactly what each modality's preprocessing produces, so workers run the production path
unchanged. Only two to five modalities take part, to keep each test small.

Faults and what must happen:

* media the workers cannot use (no audio track, no face in part or all of the video, a file truncated
  after its index): a clear per-modality status, fusion goes on with the rest, or the job fails with
  the reason;
* a model server down, or serving a model with another signature: bounded retries, the modality
  ``failed`` with the reason, the job done with the others (and saying which were used);
* a worker SIGKILLed while it holds a task: the task is re-delivered to the other worker;
* Redis restarting: the gateway answers 503 at once, accepted jobs and their queued tasks survive
  (append-only file, as in compose and ``empathy up``), and finish once Redis is back;
* Redis away and the model server restarting while a task runs: the task waits for both (job-store
  writes retried, the model waited for until AVAILABLE) and the job finishes complete, not degraded;
* a worker SIGKILLed mid-task at the default visibility timeout (an hour): the watchdog sees its heartbeat
  stop and sends the task again within a lease; a job whose chord never fired is fused by the watchdog;
* a pickle message on a queue: refused by the worker (JSON only).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from jobs.files import JobFiles
from jobs.request import JobRequest
from jobs.storage.local import LocalStorage
from jobs.store import JobStore
from services.celery_app import FUSE_TASK
from services.celery_app import create_app as create_celery
from shared.ports import free_port
from shared.settings import Settings
from shared.values import ModalityResult
from tests.ensemble_support import (
    REPO,
    RedisServer,
    api_keys_env,
    bearer,
    ensemble_env,
    environment,
    export_tiny_model,
    kill_group,
    redis_db,
    start_worker,
    stop,
    wait_for,
    write_face_video,
    write_tiny_video,
)

TRANSCRIPT = REPO / "tests" / "fixtures" / "transcribe_sample.json"
JOB_TIMEOUT_S = 120


# --- media and models ----------------------------------------------------------------------------------
def write_truncated_faststart(path: Path) -> Path:
    """An MP4 whose index comes first (``faststart``) cut in half: it probes fine, decoding stops early."""
    full = write_tiny_video(path.with_name("full_" + path.name), seconds=4.0, noise=True,
                            options={"movflags": "faststart"})
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fault_media")
    return {
        "tiny": write_tiny_video(folder / "tiny.mp4"),  # 2 s, audio, no face
        "face_silent": write_face_video(folder / "face.mp4"),  # 4 s, face in the first 2 s, no audio track
        "truncated": write_truncated_faststart(folder / "truncated.mp4"),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]) -> Path:
    """Tiny real models of four modalities, published like the trainer publishes them."""
    models_dir = tmp_path_factory.mktemp("fault_models") / "models"
    export_tiny_model(models_dir, "audio", media["tiny"])
    export_tiny_model(models_dir, "text", media["tiny"], transcript=TRANSCRIPT)
    export_tiny_model(models_dir, "body", media["tiny"], params={"size": 16})
    export_tiny_model(models_dir, "landmarks", media["face_silent"])
    return models_dir


def start_model_server(models_dir: Path, port: int | None = None):  # noqa: ANN201
    from services.model_server.repository import ModelRepository
    from services.model_server.server import ModelServer

    return ModelServer(ModelRepository(models_root=models_dir), grpc_port=port, rest_port=0,
                       host="127.0.0.1").start()


@pytest.fixture(scope="module")
def model_server(models: Path) -> Iterator[str]:
    server = start_model_server(models)
    yield f"127.0.0.1:{server.grpc_port}"
    server.stop()


# --- the ensemble around a test ------------------------------------------------------------------------
def base_env(redis_url: str, tmp_path: Path, models: Path, model_server: str, **extra: str) -> dict[str, str]:
    defaults = {"EMPATHY_MODEL_SERVER": model_server, "EMPATHY_FUSION_CUTOFF_HZ": "0.5",
                "EMPATHY_MODEL_SERVER_RETRIES": "2", "EMPATHY_MODEL_SERVER_BACKOFF_S": "0.1",
                "EMPATHY_MODEL_SERVER_TIMEOUT_S": "10"}
    return ensemble_env(redis_url, tmp_path / "storage", models, **{**defaults, **extra})


@contextmanager
def running_workers(tmp_path: Path, env: dict[str, str], specs: list[tuple[str, str, dict[str, str]]], *,
                    own_group: bool = False) -> Iterator[dict[str, Any]]:
    """Start ``(queue, name, extra env)`` workers, wait until every one answers ping, stop them after."""
    processes = {name: start_worker(queue, {**env, **extra}, name=name, log_path=tmp_path / f"{name}.log",
                                    own_group=own_group) for queue, name, extra in specs}
    with environment(env) as settings:
        control = create_celery(settings).control
    try:
        def all_answer() -> bool:
            dead = [name for name, process in processes.items() if process.poll() is not None]
            assert not dead, f"workers exited: {dead}: {worker_log(tmp_path, dead[0])[-2000:]}"
            answered = {host.split("@")[0] for reply in control.ping(timeout=0.5) or [] for host in reply}
            return set(processes) <= answered

        wait_for(all_answer, timeout=90, interval=0.2, what="workers answering ping")
        yield processes
    finally:
        for process in processes.values():
            stop(process)


def worker_log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text(errors="replace")


@contextmanager
def gateway(env: dict[str, str]) -> Iterator[Any]:
    """The gateway app (with API keys) as a test client whose requests carry alice's key."""
    from gateway.app import create_app

    with environment({**env, **api_keys_env()}):
        client = create_app().test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = bearer("alice")["Authorization"]
        yield client


def submit(client: Any, video: Path, modalities: str, **form: Any) -> str:
    response = client.post("/v1/jobs", data={"video": (io.BytesIO(video.read_bytes()), video.name),
                                             "modalities": modalities, **form},
                           content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def final_state(client: Any, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def finished() -> bool:
        state.update(client.get(f"/v1/jobs/{job_id}").get_json())
        return state["state"] in ("done", "failed")

    wait_for(finished, timeout=timeout, interval=0.2, what=f"job {job_id} finished")
    return state


# --- the faults ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_media_the_workers_cannot_use_becomes_a_status_per_modality(redis_url: str, tmp_path: Path, models: Path,
                                                                     model_server: str, media: dict[str, Path]) -> None:
    url = redis_db(redis_url, 9)
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, tmp_path, models, model_server)
    specs = [(q, q, {}) for q in ("audio", "text", "landmarks", "body", "fusion")]
    with running_workers(tmp_path, env, specs), gateway(env) as client:
        silent = submit(client, media["face_silent"], "audio,text,landmarks,body", subject="1")
        faceless = submit(client, media["tiny"], "audio,landmarks,body", subject="99")
        truncated = submit(client, media["truncated"], "audio,body")  # probes fine: the index is intact

        # No audio track: audio and language are unavailable; the face, seen in the first half only, counts
        # there; fusion goes on with what saw something and says which modalities it used.
        job = final_state(client, silent)
        statuses = {name: entry["status"] for name, entry in job["modalities"].items()}
        assert statuses == {"audio": "unavailable", "text": "unavailable", "landmarks": "ok", "body": "ok"}, job
        assert "no audio stream" in job["modalities"]["audio"]["detail"]
        assert "no audio stream" in job["modalities"]["text"]["detail"]
        assert job["state"] == "done" and job["degraded"] is True and job["used"] == ["landmarks", "body"]
        document = client.get(f"/v1/jobs/{silent}/result").get_json()
        assert document["degraded"] is True and document["fusion"]["used"] == ["landmarks", "body"]
        landmarks = np.array([np.nan if v is None else v for v in document["modalities"]["landmarks"]["valence"]])
        assert np.isfinite(landmarks[:50]).all() and np.isnan(landmarks[80:]).all()  # face gone after frame 50
        assert None not in document["valence"] and len(document["valence"]) == 100
        agreement = np.array(document["agreement"])
        assert (agreement[80:] == 0).all() and ((agreement >= 0) & (agreement <= 1)).all()  # body alone there

        # No face anywhere: landmarks unavailable; a listener no model knows: re-scaled like subject 0.
        job = final_state(client, faceless)
        assert job["state"] == "done" and job["used"] == ["audio", "body"]
        assert job["modalities"]["landmarks"]["status"] == "unavailable"
        assert "nothing usable" in job["modalities"]["landmarks"]["detail"]
        notes = client.get(f"/v1/jobs/{faceless}/result").get_json()["notes"]
        assert any("subject 99 is unknown" in note for note in notes), notes

        # Cut short after a valid index: every modality fails on it, so the job fails, saying why.
        job = final_state(client, truncated)
        assert job["state"] == "failed" and "no module to fuse" in job["error"]
        for name in ("audio", "body"):
            detail = job["modalities"][name]["detail"]
            assert job["modalities"][name]["status"] == "failed" and "truncated" in detail
            assert str(tmp_path) not in detail  # the worker's paths stay on the server
        response = client.get(f"/v1/jobs/{truncated}/result")
        assert response.status_code == 409 and "failed" in response.get_json()["error"]


@pytest.mark.slow
def test_a_model_server_down_or_wrong_fails_only_its_modality(redis_url: str, tmp_path: Path, models: Path,
                                                              model_server: str, media: dict[str, Path]) -> None:
    # "Wrong": a server that serves the body model's version under another signature (input renamed).
    wrong_models = tmp_path / "wrong_models"
    export_tiny_model(wrong_models, "body", media["tiny"], params={"size": 16}, rename_inputs={"body": "pixels"})
    wrong = start_model_server(wrong_models)
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    url = redis_db(redis_url, 10)
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, tmp_path, models, model_server)
    # Nothing will ever listen at `down`: a one-second wait for the model to load instead of the default.
    specs = [("audio", "audio", {"EMPATHY_AUDIO_MODEL_SERVER": down, "EMPATHY_MODEL_LOAD_TIMEOUT_S": "1"}),
             ("body", "body", {"EMPATHY_BODY_MODEL_SERVER": f"127.0.0.1:{wrong.grpc_port}"}),
             ("text", "text", {}), ("fusion", "fusion", {})]
    try:
        with running_workers(tmp_path, env, specs), gateway(env) as client:
            transcript = (io.BytesIO(TRANSCRIPT.read_bytes()), "words.json")
            degraded = submit(client, media["tiny"], "audio,text,body", transcript=transcript)
            hopeless = submit(client, media["tiny"], "audio,body")

            job = final_state(client, degraded)
            assert job["state"] == "done" and job["degraded"] is True and job["used"] == ["text"], job
            audio, body = job["modalities"]["audio"], job["modalities"]["body"]
            assert audio["status"] == "failed" and f"no model server answered at {down} after 3 attempts" \
                in audio["detail"]
            assert audio["seconds"] < 10  # 2 retries with a 0.1 s backoff, a 1 s wait for loading, not a hang
            assert body["status"] == "failed" and "SignatureMismatchError" in body["detail"]
            assert "unknown inputs ['body']" in body["detail"] and "pixels" in body["detail"]
            document = client.get(f"/v1/jobs/{degraded}/result").get_json()
            assert document["fusion"]["used"] == ["text"] and document["fusion"]["weights"] == {"text": 1.0}
            assert None not in document["valence"]

            job = final_state(client, hopeless)
            assert job["state"] == "failed" and "no module to fuse" in job["error"]
            assert {entry["status"] for entry in job["modalities"].values()} == {"failed"}
    finally:
        wrong.stop()
    # bounded: EMPATHY_MODEL_SERVER_RETRIES=2 retries per job, for the two jobs that asked for audio
    assert worker_log(tmp_path, "audio").count("model server call failed, retrying") == 2 * 2


@pytest.mark.slow
def test_a_worker_killed_while_it_holds_a_task_is_replaced_by_another(redis_url: str, tmp_path: Path,
                                                                       models: Path) -> None:
    # The audio model server comes up only after the kill, so the first worker is still predicting
    # (retrying) when it dies. Short visibility timeout and sweep interval: re-delivery in seconds.
    late_port = free_port()
    url = redis_db(redis_url, 11)
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, tmp_path, models, f"127.0.0.1:{late_port}", EMPATHY_MODEL_SERVER_RETRIES="60",
                   EMPATHY_MODEL_SERVER_BACKOFF_S="0.2", EMPATHY_TASK_VISIBILITY_TIMEOUT_S="4",
                   EMPATHY_TASK_RESTORE_INTERVAL_S="1", EMPATHY_MODEL_LOAD_TIMEOUT_S="1")
    store = JobStore.from_url(url, ttl_s=600)
    video = write_tiny_video(tmp_path / "clip.mp4")
    specs = [("audio", "audio-1", {}), ("audio", "audio-2", {}), ("fusion", "fusion", {})]
    server = None
    with running_workers(tmp_path, env, specs, own_group=True) as workers, gateway(env) as client:
        job_id = submit(client, video, "audio")
        wait_for(lambda: store.raw(job_id).get("audio.status") == "predicting", timeout=30,
                 what="a worker predicting")
        holder = store.raw(job_id)["audio.worker"].split("@")[0]
        survivor = ({"audio-1", "audio-2"} - {holder}).pop()
        kill_group(workers[holder])
        killed_at = time.monotonic()
        try:
            server = start_model_server(models, port=late_port)
            job = final_state(client, job_id)
        finally:
            if server is not None:
                server.stop()
        assert job["state"] == "done" and job["modalities"]["audio"]["status"] == "ok", job
        assert job["modalities"]["audio"]["attempts"] == 2
        assert store.raw(job_id)["audio.worker"].split("@")[0] == survivor
        assert time.monotonic() - killed_at < 60
        assert workers[holder].returncode == -9 and workers[survivor].poll() is None
    assert "task re-delivered" in worker_log(tmp_path, survivor)


@pytest.mark.slow
def test_redis_restarting_gives_503_and_loses_no_accepted_job(tmp_path: Path, models: Path, model_server: str,
                                                             media: dict[str, Path]) -> None:
    server = RedisServer(tmp_path / "redis", free_port()).start()
    env = base_env(server.url, tmp_path, models, model_server, EMPATHY_REDIS_TIMEOUT_S="2")
    storage = tmp_path / "storage"
    try:
        with gateway(env) as client:
            before = submit(client, media["tiny"], "audio")
            server.stop()

            started = time.monotonic()
            response = client.get("/readyz")
            assert response.status_code == 503 and response.get_json()["checks"]["redis"]["ready"] is False
            response = client.get(f"/v1/jobs/{before}")
            assert response.status_code == 503 and "job store unavailable" in response.get_json()["error"]
            assert response.headers["Retry-After"] == "5"
            response = client.post("/v1/jobs", data={"video": (io.BytesIO(media["tiny"].read_bytes()), "a.mp4")},
                                   content_type="multipart/form-data")
            assert response.status_code == 503
            assert time.monotonic() - started < 10  # three answers (refused connections: well under 1 s), none hung
            assert sorted(p.name for p in (storage / "jobs").iterdir()) == [before]  # nothing half-made kept
            assert not any((storage / "uploads").iterdir())

            server.start()  # same port, same append-only file
            job = client.get(f"/v1/jobs/{before}").get_json()
            assert job["state"] == "queued" and job["modalities"]["audio"]["status"] == "queued"
            assert redis.Redis.from_url(server.url).llen("audio") == 1  # its task survived too
            assert client.get("/readyz").get_json()["checks"]["redis"]["ready"] is True
            after = submit(client, media["tiny"], "audio")  # the gateway reconnected by itself

            with running_workers(tmp_path, env, [("audio", "audio", {}), ("fusion", "fusion", {})]):
                for job_id in (before, after):
                    job = final_state(client, job_id)
                    assert job["state"] == "done" and job["used"] == ["audio"], job
    finally:
        server.stop()


def test_workers_refuse_pickle_messages(redis_url: str, tmp_path: Path) -> None:
    url = redis_db(redis_url, 12)
    redis.Redis.from_url(url).flushdb()
    env = ensemble_env(url, tmp_path / "storage", tmp_path / "models")
    store = JobStore.from_url(url, ttl_s=600)
    pickled, sentinel = "a" * 32, "b" * 32
    outcomes = []
    for job_id in (pickled, sentinel):
        store.create(job_id, JobRequest(subject=0, modalities=("audio",)), filename="clip.mp4", video="")
        values = np.sin(np.arange(100) / 10.0)
        series = JobFiles(LocalStorage(tmp_path / "storage"), job_id).save_series(
            ModalityResult("audio", values, np.isnan(values), "ok"))
        outcomes.append([{"modality": "audio", "status": "ok", "series": series}])
    with environment(env) as settings:
        app = create_celery(settings)
    with running_workers(tmp_path, env, [("fusion", "fusion", {})]):
        app.send_task(FUSE_TASK, args=[outcomes[0]], kwargs={"job_id": pickled}, serializer="pickle")
        app.send_task(FUSE_TASK, args=[outcomes[1]], kwargs={"job_id": sentinel})
        wait_for(lambda: store.raw(sentinel).get("state") == "done", timeout=30, what="the JSON task ran")
    assert store.raw(pickled)["state"] == "queued"  # the pickle message never ran
    log = worker_log(tmp_path, "fusion")
    assert "untrusted content of type pickle" in log, log[-2000:]
    assert JobFiles(LocalStorage(tmp_path / "storage"), sentinel).has_result()


@pytest.mark.slow
def test_redis_away_and_a_model_server_restart_during_a_task_lose_nothing(tmp_path: Path, models: Path,
                                                                          media: dict[str, Path]) -> None:
    redis_server = RedisServer(tmp_path / "redis", free_port()).start()
    port = free_port()
    server = start_model_server(models, port=port)
    env = base_env(redis_server.url, tmp_path, models, f"127.0.0.1:{port}")
    store = JobStore.from_url(redis_server.url, ttl_s=600)
    try:
        with running_workers(tmp_path, env, [("audio", "audio", {}), ("fusion", "fusion", {})]), \
                gateway(env) as client:
            server.stop()  # the model server goes away (and will come back with nothing loaded)
            server = None
            job_id = submit(client, media["tiny"], "audio")
            wait_for(lambda: store.raw(job_id).get("audio.status") == "predicting", timeout=60,
                     what="the worker predicting")
            time.sleep(2.0)  # its quick retries spent: now waiting for the model to load
            redis_server.stop()
            time.sleep(12.0)  # the outage that used to end the job degraded (TimeoutError) or stuck
            redis_server.start()
            server = start_model_server(models, port=port)
            job = final_state(client, job_id)
            assert job["state"] == "done" and job["degraded"] is False and job["used"] == ["audio"], job
            assert job["modalities"]["audio"]["status"] == "ok" and "attempts" not in job["modalities"]["audio"]
    finally:
        if server is not None:
            server.stop()
        redis_server.stop()
    assert "waiting for it to load" in worker_log(tmp_path, "audio")


@pytest.mark.slow
def test_a_task_whose_worker_died_is_sent_again_well_before_the_visibility_timeout(
        redis_url: str, tmp_path: Path, models: Path, media: dict[str, Path]) -> None:
    port = free_port()
    server = start_model_server(models, port=port)
    url = redis_db(redis_url, 13)
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, tmp_path, models, f"127.0.0.1:{port}")  # visibility timeout and lease: the defaults
    store = JobStore.from_url(url, ttl_s=600)
    specs = [("audio", "audio-1", {}), ("audio", "audio-2", {}), ("fusion", "fusion", {})]
    try:
        with running_workers(tmp_path, env, specs, own_group=True) as workers, gateway(env) as client:
            server.stop()  # so that the task is still running (waiting for the model) when its worker dies
            server = None
            job_id = submit(client, media["tiny"], "audio")
            wait_for(lambda: store.raw(job_id).get("audio.status") == "predicting", timeout=60,
                     what="a worker predicting")
            holder = store.raw(job_id)["audio.worker"].split("@")[0]
            kill_group(workers[holder])
            killed_at = time.monotonic()
            server = start_model_server(models, port=port)
            job = final_state(client, job_id, timeout=240)
            waited = time.monotonic() - killed_at
            assert job["state"] == "done" and job["modalities"]["audio"]["status"] == "ok", job
            assert job["modalities"]["audio"]["attempts"] == 2
            lease = Settings().task_lease_s
            assert waited < 3 * lease + 30, waited  # a lease and a sweep, not the hour of the visibility timeout
    finally:
        if server is not None:
            server.stop()
    assert "task vanished; sending it again" in worker_log(tmp_path, "fusion")


def test_the_watchdog_resends_lost_tasks_and_fuses_jobs_whose_chord_never_fired(redis_url: str,
                                                                                 tmp_path: Path) -> None:
    from services.watchdog import sweep

    url = redis_db(redis_url, 14)
    redis.Redis.from_url(url).flushdb()
    env = ensemble_env(url, tmp_path / "storage", tmp_path / "models")
    store = JobStore.from_url(url, ttl_s=600)
    lost, unfused = "d" * 32, "e" * 32
    audio = JobRequest(subject=0, modalities=("audio",))
    store.create(lost, audio, filename="a.mp4", video="")  # its message never sent
    store.create(unfused, audio, filename="b.mp4", video="")
    values = np.sin(np.arange(100) / 10.0)
    JobFiles(LocalStorage(tmp_path / "storage"), unfused).save_series(
        ModalityResult("audio", values, np.isnan(values), "ok"))
    store.update_modality(unfused, "audio", status="ok", progress=1.0)
    with environment(env) as settings:
        app = create_celery(settings)
        later = time.time() + settings.task_lease_s + 1
        assert sweep(store, app, settings, now=time.time()) == {"analyses": 0, "fusions": 0}  # within the lease
        assert sweep(store, app, settings, now=later) == {"analyses": 1, "fusions": 1}
        assert redis.Redis.from_url(url).llen("audio") == 1
        assert sweep(store, app, settings, now=later + 1) == {"analyses": 0, "fusions": 0}  # in line now
    with running_workers(tmp_path, env, [("fusion", "fusion", {})]):
        wait_for(lambda: store.raw(unfused).get("state") == "done", timeout=30, what="the watchdog's fusion")
    assert store.raw(lost)["audio.status"] == "queued" and store.active_jobs() == [lost]
