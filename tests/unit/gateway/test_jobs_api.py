"""The gateway's HTTP API against a real Redis: upload validation, job state, results, deletion, OpenAPI.

No worker runs here: the chord's messages stay in their Redis queues (which shows the routing), and the
fusion task's real code is called in-process on stored series to produce a result to fetch.
"""

from __future__ import annotations

import io
import json
import logging
import re

import numpy as np
import pytest
import redis

from jobs.files import JobFiles
from jobs.storage.local import LocalStorage
from shared.settings import MODALITIES
from shared.values import ModalityResult
from tests.ensemble_support import (
    write_tiny_video,
)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_video(tmp_path_factory.mktemp("video") / "clip.mp4").read_bytes()


def submit(client, data: bytes, **form: str):  # noqa: ANN001, ANN201
    return client.post("/v1/jobs", data={"video": (io.BytesIO(data), "Subject_1_Story_2.mp4"), **form},
                       content_type="multipart/form-data")


def test_upload_validation(client, video: bytes) -> None:  # noqa: ANN001
    response = client.post("/v1/jobs", data={"subject": "1"}, content_type="multipart/form-data")
    assert response.status_code == 400 and "video" in response.get_json()["error"]
    assert submit(client, b"").status_code == 400
    response = submit(client, b"this is not a video at all" * 100)
    assert response.status_code == 415 and "not a usable video" in response.get_json()["error"]
    assert submit(client, video, subject="-3").status_code == 400
    assert submit(client, video, subject="abc").status_code == 400
    response = submit(client, video, modalities="audio,smell")
    assert response.status_code == 400 and "smell" in response.get_json()["error"]
    response = submit(client, b"\0" * (1024 * 1024 + 10))
    assert response.status_code == 413 and "EMPATHY_MAX_UPLOAD_MB" in response.get_json()["error"]
    response = submit(client, video, transcript=(io.BytesIO(b"{not json"), "words.json"))
    assert response.status_code == 400 and "transcript" in response.get_json()["error"]
    response = submit(client, video, fusion="median")
    assert response.status_code == 400 and "fusion" in response.get_json()["error"]


def test_submit_creates_a_job_and_routes_one_task_per_modality_queue(client, env, video) -> None:  # noqa: ANN001
    broker = redis.Redis.from_url(env["EMPATHY_REDIS_URL"])
    response = submit(client, video, subject="4", modalities="landmarks,audio")
    assert response.status_code == 202
    job = response.get_json()
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"])
    assert response.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    assert job["state"] == "queued" and job["subject"] == 4 and job["n_frames"] == 50
    assert list(job["modalities"]) == ["audio", "landmarks"]  # canonical order
    assert {broker.llen(q) for q in ("audio", "landmarks")} == {1}
    assert {broker.llen(q) for q in ("text", "face", "body", "fusion")} == {0}  # fusion waits for the chord
    message = json.loads(broker.lindex("landmarks", 0))
    assert message["headers"]["task"] == "empathy.analyze_modality"
    assert message["content-type"] == "application/json"
    status = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert status["state"] == "queued" and status["modalities"]["audio"] == {"status": "queued", "progress": 0.0}
    assert LocalStorage(env["EMPATHY_STORAGE_DIR"]).path(job["id"], "video.mp4").read_bytes() == video
    response = client.get(f"/v1/jobs/{job['id']}/result")
    assert response.status_code == 409 and response.get_json()["state"] == "queued"
    all_five = submit(client, video).get_json()
    assert list(all_five["modalities"]) == list(MODALITIES) and all_five["subject"] == 0


def test_unknown_jobs_are_404(client) -> None:  # noqa: ANN001
    for path in ("/v1/jobs/0123456789abcdef0123456789abcdef", "/v1/jobs/../../etc/passwd", "/v1/jobs/nope/result",
                 "/v1/jobs/0123456789abcdef0123456789abcdef/plot.png"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "error" in response.get_json()
    assert client.delete("/v1/jobs/0123456789abcdef0123456789abcdef").status_code == 404


def test_result_json_csv_plot_and_delete(client, env, video) -> None:  # noqa: ANN001
    from services.tasks import fuse

    job = submit(client, video, subject="1", modalities="audio,text,face", fusion="paper").get_json()
    files = JobFiles(LocalStorage(env["EMPATHY_STORAGE_DIR"]), job["id"])
    t = np.arange(50) / 25.0
    outcomes = []
    for name, shift, status in (("audio", 0.0, "ok"), ("text", 0.1, "ok"), ("face", 0.0, "unavailable")):
        values = np.sin(t) + shift if status == "ok" else np.full(50, np.nan)
        series = files.save_series(ModalityResult(name, values, ~np.isfinite(values), status, seconds=0.5))
        outcomes.append({"modality": name, "status": status, "series": series})
    done = fuse(outcomes, job_id=job["id"])
    assert done["state"] == "done"

    status = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert status["state"] == "done" and status["progress"] == 1.0
    document = client.get(f"/v1/jobs/{job['id']}/result").get_json()
    assert document["n_frames"] == 50 and len(document["valence"]) == 50 and len(document["agreement"]) == 50
    assert document["fusion"]["used"] == ["audio", "text"]
    assert document["fusion"]["method"] == "paper" and document["fusion"]["weights_spec"] == "paper"  # the job's
    low, high = np.array(document["band"]["low"]), np.array(document["band"]["high"])
    valence = np.array(document["valence"])
    assert (low <= valence).all() and (high >= valence).all() and (high - low > 0.01).all()  # the band holds the curve
    assert low.min() >= -1.0 and high.max() <= 1.0  # bounded to the label range like the curve itself
    assert document["band"]["coverage"] is None and any("not calibrated" in n for n in document["notes"])
    assert document["modalities"]["face"]["status"] == "unavailable"
    assert document["modalities"]["face"]["valence"] == [None] * 50

    response = client.get(f"/v1/jobs/{job['id']}/result?format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "valence,agreement,band_low,band_high,audio,text,face"
    assert len(lines) == 51
    first = lines[1].split(",")
    assert first[6] == "" and float(first[0]) == pytest.approx(document["valence"][0], abs=1e-5)
    assert float(first[2]) == pytest.approx(document["band"]["low"][0], abs=1e-5)
    assert client.get(f"/v1/jobs/{job['id']}/result?format=xml").status_code == 400

    png = client.get(f"/v1/jobs/{job['id']}/plot.png")
    assert png.status_code == 200 and png.data[:8] == b"\x89PNG\r\n\x1a\n"

    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert not files.exists() and not LocalStorage(env["EMPATHY_STORAGE_DIR"]).job_dir(job["id"]).exists()


def test_openapi_documents_exactly_the_routes(client) -> None:  # noqa: ANN001
    spec = client.get("/openapi.json").get_json()
    documented = {(path, method.upper()) for path, item in spec["paths"].items()
                  for method in item if method != "parameters"}
    routes = set()
    for rule in client.application.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routes


def test_health_readiness_and_metrics(client) -> None:  # noqa: ANN001
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503  # no model server listens on 127.0.0.1:1
    report = response.get_json()
    assert report["checks"]["redis"]["ready"] is True
    assert report["checks"]["storage"] == {"ready": True, "backend": "local"}
    assert report["checks"]["model:audio"]["ready"] is False and "UNAVAILABLE" in report["checks"]["model:audio"]["error"]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'empathy_queue_length{queue="landmarks"}' in text
    assert 'empathy_http_requests_total{endpoint="/readyz",method="GET",status="503"} 1.0' in text


def test_wrong_methods_are_405_with_allow(client) -> None:  # noqa: ANN001
    """Before: a 405 without ``Allow`` (the error handler dropped werkzeug's headers)."""
    for method, path, allowed in (("put", "/v1/jobs", {"POST"}), ("post", "/healthz", {"GET"}),
                                  ("patch", "/v1/jobs/" + "0" * 32, {"GET", "DELETE"})):
        response = getattr(client, method)(path)
        assert response.status_code == 405, (method, path)
        assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}, response.headers
        assert response.content_type == "application/json" and "error" in response.get_json()


def test_refusals_are_counted_and_logged_as_samples(client, caplog) -> None:  # noqa: ANN001
    """Before: one WARNING line per refused request (16 831 lines while fuzzing)."""
    caplog.set_level(logging.WARNING)
    for _ in range(20):  # under EMPATHY_AUTH_FAILURE_LIMIT
        assert client.get("/v1/jobs/not-an-id", headers={"Authorization": ""}).status_code == 401
    for _ in range(200):
        assert client.post("/healthz").status_code == 405
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "gateway.metrics"]
    assert [r.reason for r in warnings] == ["no_valid_key", "MethodNotAllowed"]  # one line per reason
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'empathy_refused_requests_total{reason="no_valid_key",status="401"} 20.0' in metrics
    assert 'empathy_refused_requests_total{reason="MethodNotAllowed",status="405"} 200.0' in metrics
