"""Limits of the gateway that protect the ensemble: Redis outages answered in time, refused-request rate,
pixel bombs (frame size and pixel rate, at upload and again in the workers)."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import av
import numpy as np

from gateway.app import create_app
from jobs.store import JobStore
from shared.ports import free_port
from shared.settings import get_settings
from tests.ensemble_support import (
    RedisServer,
    api_keys_env,
    bearer,
    ensemble_env,
    environment,
    write_tiny_video,
)


def write_video(path: Path, width: int, height: int, *, fps: int = 25, frames: int = 3) -> Path:
    """A few frames of flat colour (cheap to encode at any size)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (40 * i) % 256, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def upload(client, video: Path, **kwargs):  # noqa: ANN001, ANN201
    return client.post("/v1/jobs", data={"video": (io.BytesIO(video.read_bytes()), video.name)},
                       content_type="multipart/form-data", **kwargs)


# --- pixel bombs -------------------------------------------------------------------------------------------
def test_frames_larger_than_the_limit_are_413_before_any_decode(client, env, tmp_path: Path) -> None:  # noqa: ANN001
    big = write_video(tmp_path / "big.mp4", 4096, 2304)  # 4K DCI-ish: more pixels than 3840x2160
    response = upload(client, big)
    assert response.status_code == 413, response.get_json()
    assert "4096x2304" in response.get_json()["error"] and "EMPATHY_MAX_FRAME_SIZE" in response.get_json()["error"]
    tall = write_video(tmp_path / "tall.mp4", 1080, 1920, frames=30)  # portrait within the limit: accepted
    assert upload(client, tall).status_code == 202
    assert not any((Path(env["EMPATHY_STORAGE_DIR"]) / "uploads").iterdir())


def test_a_pixel_rate_above_the_limit_is_413(client, tmp_path: Path) -> None:  # noqa: ANN001
    fast = write_video(tmp_path / "fast.mp4", 1920, 1088, fps=300, frames=3)  # 627 Mpixel/s
    response = upload(client, fast)
    assert response.status_code == 413 and "EMPATHY_MAX_PIXEL_RATE" in response.get_json()["error"]


def test_workers_refuse_the_same_media(env, tmp_path: Path) -> None:  # noqa: ANN001
    """A video that reached the storage volume another way is refused by the worker from its headers."""
    from jobs.request import JobRequest
    from jobs.storage.local import LocalStorage
    from services.tasks import analyze_modality

    store = JobStore.from_url(env["EMPATHY_REDIS_URL"], ttl_s=600)
    job_id = "c" * 32
    write_video(tmp_path / "big.mp4", 4096, 2304)
    LocalStorage(env["EMPATHY_STORAGE_DIR"]).put_file(job_id, "video.mp4", tmp_path / "big.mp4")
    store.create(job_id, JobRequest(subject=0, modalities=("body",)), filename="big.mp4", video="video.mp4")
    outcome = analyze_modality(job_id, "body")
    job = store.status(job_id)
    assert outcome["status"] == "failed" and job["modalities"]["body"]["status"] == "failed"
    assert "EMPATHY_MAX_FRAME_SIZE" in job["modalities"]["body"]["detail"]


# --- refused requests ---------------------------------------------------------------------------------------
def test_refused_requests_are_limited_per_address_and_per_key_and_never_lock_a_valid_key_out(
        client, env, tmp_path: Path) -> None:  # noqa: ANN001
    """Before: 30 keyless requests from one address, then alice's request from it: 429, her uploads too."""
    limit = get_settings().auth_failure_limit
    unknown = "/v1/jobs/" + "0" * 32
    for i in range(limit):  # one address, a different wrong key each time (or none)
        headers = {"Authorization": f"Bearer guess-{i:020d}" if i % 2 else ""}
        assert client.get(unknown, headers=headers).status_code == 401
    response = client.get(unknown, headers={"Authorization": "Bearer yet-another-guess-000"})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert response.headers["Connection"] == "close" and "error" in response.get_json()
    assert client.get(unknown, headers={"Authorization": ""}).status_code == 429  # no key: the address's count
    # valid keys from that same address are served: their own failures only count against them
    assert client.get("/v1/jobs/" + "1" * 32).status_code == 404
    assert upload(client, write_tiny_video(tmp_path / "clip.mp4")).status_code == 202
    assert client.get(unknown, headers=bearer("bob")).status_code == 404

    # one key guessing job ids from many addresses: limited by the key, wherever it calls from
    for i in range(limit - 1):  # alice's 404 above counted once already
        addr = {"REMOTE_ADDR": f"10.9.{i // 250}.{i % 250}"}
        assert client.get(f"/v1/jobs/{i:032x}", environ_base={**client.environ_base, **addr}).status_code == 404
    assert client.get(unknown, environ_base={**client.environ_base, "REMOTE_ADDR": "10.200.0.1"}).status_code == 429
    assert client.get(unknown, headers=bearer("bob")).status_code == 404  # bob is not alice
    assert client.get("/healthz").status_code == 200  # probes are never limited

    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'empathy_refused_requests_total{reason="too_many_failures",status="429"} 3.0' in metrics
    assert f'empathy_refused_requests_total{{reason="no_valid_key",status="401"}} {float(limit)}' in metrics
    assert f'empathy_gateway_limit{{limit="auth_failures_per_window"}} {float(limit)}' in metrics


def test_per_key_limits_on_accepted_work(env, tmp_path: Path) -> None:  # noqa: ANN001
    video = write_tiny_video(tmp_path / "clip.mp4")
    with environment({**env, "EMPATHY_KEY_ACTIVE_JOBS": "2", "EMPATHY_KEY_JOBS_PER_MINUTE": "3"}):
        client = create_app().test_client()
        store = JobStore.from_url(env["EMPATHY_REDIS_URL"], ttl_s=600)
        first = [upload(client, video, headers=bearer("alice")) for _ in range(2)]
        assert [r.status_code for r in first] == [202, 202]
        refused = upload(client, video, headers=bearer("alice"))  # two unfinished: the third waits
        assert refused.status_code == 429 and "EMPATHY_KEY_ACTIVE_JOBS" in refused.get_json()["error"]
        assert upload(client, video, headers=bearer("bob")).status_code == 202  # another key is not limited
        store.finish(first[0].get_json()["id"], result="r.json")
        assert upload(client, video, headers=bearer("alice")).status_code == 202  # one finished: room for one
        store.finish(first[1].get_json()["id"], error="failed")
        rate = upload(client, video, headers=bearer("alice"))  # 3 accepted within the minute
        assert rate.status_code == 429 and "EMPATHY_KEY_JOBS_PER_MINUTE" in rate.get_json()["error"]
        assert 1 <= int(rate.headers["Retry-After"]) <= 60
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'empathy_refused_requests_total{reason="key_active_jobs",status="429"} 1.0' in metrics
        assert 'empathy_refused_requests_total{reason="key_rate",status="429"} 1.0' in metrics
        assert 'empathy_gateway_limit{limit="key_active_jobs"} 2.0' in metrics


# --- Redis outages ------------------------------------------------------------------------------------------
def test_redis_down_or_unreachable_answers_503_within_the_timeout(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", free_port()).start()
    values = {**ensemble_env(server.url, tmp_path / "storage", tmp_path / "models"), **api_keys_env()}
    video = write_tiny_video(tmp_path / "clip.mp4")
    timeout = get_settings().redis_timeout_s
    try:
        with environment(values):
            client = create_app().test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = bearer("alice")["Authorization"]
            job_id = upload(client, video).get_json()["id"]
            figures = {}
            for fault in ("unreachable", "stopped"):
                if fault == "unreachable":
                    os.kill(server.process.pid, signal.SIGSTOP)  # connections open, nothing answers
                else:
                    os.kill(server.process.pid, signal.SIGCONT)
                    server.stop()
                for what, call in (("upload", lambda: upload(client, video)),
                                   ("status", lambda: client.get(f"/v1/jobs/{job_id}"))):
                    started = time.monotonic()
                    response = call()
                    figures[f"{fault} {what}"] = seconds = time.monotonic() - started
                    assert response.status_code == 503, (fault, what, response.get_json())
                    assert seconds < timeout + 0.5, figures
            print("time to 503:", {k: round(v, 2) for k, v in figures.items()})
            server.start()
            assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
