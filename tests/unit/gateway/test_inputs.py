"""Bad input at the gateway, against a real Redis: every case gets a clear 4xx and leaves nothing behind.

Each rejected upload is checked twice: the answer (status and a reason that names the problem, never a
server path) and the storage volume (no job directory, no temporary upload left). Accepted oddities (a
video without audio, an unknown subject, hostile file names) are checked for what is stored and where.
What the workers make of a video without audio or without a face is in ``test_ensemble_faults.py``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from jobs.request import JobRequest
from jobs.storage.local import LocalStorage
from jobs.store import JobStore
from tests.ensemble_support import bearer, write_tiny_video
from tests.unit.gateway.conftest import MAX_UPLOAD_MB


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("media")
    picture = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    video = write_tiny_video(folder / "clip.mp4").read_bytes()
    return {
        "video": video,
        "silent_video": write_tiny_video(folder / "silent.mp4", audio=False).read_bytes(),
        # 10 minutes at 1 frame per second: far over the 60 s limit, yet a few kilobytes
        "long_video": write_tiny_video(folder / "long.mp4", seconds=600, fps=1, audio=False).read_bytes(),
        "truncated_mp4": video[: len(video) // 2],  # moov index written last: cut off with the tail
        "audio_only": write_tiny_video(folder / "voice.m4a", video=False).read_bytes(),
        "text": b"this is a transcript, not a video\n" * 40,
        "png": cv2.imencode(".png", picture)[1].tobytes(),
        "jpeg": cv2.imencode(".jpg", picture)[1].tobytes(),
        "random": np.random.default_rng(1).bytes(40_000),
    }


def submit(client, data: bytes, filename: str = "clip.mp4", headers: dict[str, str] | None = None,  # noqa: ANN001, ANN201
           **form: str):
    return client.post("/v1/jobs", data={"video": (io.BytesIO(data), filename), **form},
                       content_type="multipart/form-data", headers=headers or {})


def leftovers(storage: Path) -> list[Path]:
    """Every file on the storage volume (a rejected upload must leave none)."""
    return sorted(p for p in storage.rglob("*") if p.is_file()) if storage.exists() else []


@pytest.mark.parametrize(("sample", "reason"), [
    ("text", "not a media file"),
    ("png", "still image"),
    ("jpeg", "still image"),
    ("random", "not a media file"),
    ("truncated_mp4", "truncated"),
    ("audio_only", "no video stream"),
])
def test_not_a_video_is_415_and_nothing_is_kept(client, env, media, sample: str, reason: str) -> None:  # noqa: ANN001
    storage = Path(env["EMPATHY_STORAGE_DIR"])
    response = submit(client, media[sample], filename=f"upload.{sample}")
    assert response.status_code == 415, response.get_json()
    error = response.get_json()["error"]
    assert reason in error and "not a usable video" in error
    assert str(storage) not in error and "upload." in error  # the client's name, not the server's path
    assert leftovers(storage) == []
    assert (storage / "uploads").is_dir()  # the upload did stream to the volume, and was deleted


def test_empty_upload_is_400(client, env) -> None:  # noqa: ANN001
    response = submit(client, b"")
    assert response.status_code == 400 and "empty" in response.get_json()["error"]
    assert leftovers(Path(env["EMPATHY_STORAGE_DIR"])) == []


def test_upload_over_the_size_limit_is_413_and_nothing_is_written(client, env) -> None:  # noqa: ANN001
    storage = Path(env["EMPATHY_STORAGE_DIR"])
    too_big = b"\0" * (MAX_UPLOAD_MB * 1024 * 1024 + 10)
    response = submit(client, too_big)  # Content-Length says so: refused before reading the body
    assert response.status_code == 413 and "EMPATHY_MAX_UPLOAD_MB" in response.get_json()["error"]
    assert not storage.exists() or leftovers(storage) == []

    # A chunked upload has no Content-Length: the limit must stop it while it streams to the volume.
    boundary = "limit-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + too_big + f"\r\n--{boundary}--\r\n".encode()
    response = client.post("/v1/jobs", input_stream=io.BytesIO(body),
                           content_type=f"multipart/form-data; boundary={boundary}",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert (storage / "uploads").is_dir()  # streaming had started on the volume...
    assert leftovers(storage) == []  # ...and the partial file is gone


def test_video_longer_than_the_duration_limit_is_413(client, env, media) -> None:  # noqa: ANN001
    response = submit(client, media["long_video"])
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert "600 s" in error and "EMPATHY_MAX_DURATION_S" in error
    assert leftovers(Path(env["EMPATHY_STORAGE_DIR"])) == []


def test_video_without_audio_is_accepted(client, media) -> None:  # noqa: ANN001
    response = submit(client, media["silent_video"], modalities="audio,body")
    assert response.status_code == 202
    assert response.get_json()["n_frames"] == 50  # audio and text report 'unavailable' in the workers


@pytest.mark.parametrize("filename", ["../../../../tmp/evil.mp4", "..\\..\\windows\\evil.mp4",
                                      "a/b/../../../evil.mp4", "/etc/evil.mp4", "..", "evil\x00.mp4;rm -rf"])
def test_file_names_never_become_paths(client, env, media, tmp_path: Path, filename: str) -> None:  # noqa: ANN001
    storage = Path(env["EMPATHY_STORAGE_DIR"])
    response = submit(client, media["video"], filename=filename)
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    directory = LocalStorage(storage).job_dir(job["id"])
    assert [p.relative_to(storage) for p in leftovers(storage)] == [directory.relative_to(storage) / p.name
                                                                    for p in sorted(directory.iterdir())]
    assert sorted(p.name for p in directory.iterdir()) in (["video.mp4"], ["video.bin"])
    label = job["filename"]
    assert "/" not in label and "\\" not in label and "\x00" not in label and not label.startswith(".")
    assert not list(tmp_path.parent.rglob("evil*")) and not Path("/tmp/evil.mp4").exists()


def test_subject_field(client, env, media) -> None:  # noqa: ANN001
    # A listener no model knows is accepted: the models' pooled statistics apply (the result notes it).
    response = submit(client, media["video"], subject="99")
    assert response.status_code == 202 and response.get_json()["subject"] == 99
    # validated once here; the tasks read the stored int back with the same parser
    raw = JobStore.from_url(env["EMPATHY_REDIS_URL"], ttl_s=60).raw(response.get_json()["id"])
    assert JobRequest.from_hash(raw).subject == 99
    for bad in ("-1", "1.5", "abc", "1e3", "99999999999", "\u0663"):  # the last one: an Arabic-Indic digit
        response = submit(client, media["video"], subject=bad)
        assert response.status_code == 400, bad
        assert "subject must be an integer" in response.get_json()["error"]


def test_listener_field_is_validated_and_kept_with_the_job(client, env, media) -> None:  # noqa: ANN001
    response = submit(client, media["video"], listener="0.5,0,1,1")
    assert response.status_code == 202
    store = JobStore.from_url(env["EMPATHY_REDIS_URL"], ttl_s=60)
    assert store.raw(response.get_json()["id"])["listener"] == "0.5,0,1,1"
    assert store.raw(submit(client, media["video"]).get_json()["id"])["listener"] == ""  # the service's setting
    for bad in ("left", "0.6,0,0.5,1", "x=auto"):
        response = submit(client, media["video"], listener=bad)
        assert response.status_code == 400 and response.get_json()["error"].startswith("listener:"), bad


def test_malformed_form_fields_and_queries(client, media) -> None:  # noqa: ANN001
    checks = [
        (submit(client, media["video"], subjet="3"), "unknown form fields ['subjet']"),
        (submit(client, media["video"], modalities="audio,smell"), "smell"),
        (client.post("/v1/jobs", data={"video": "not a file"}, content_type="multipart/form-data"), "must be file uploads"),
        (client.post("/v1/jobs", data={"subject": "1"}, content_type="multipart/form-data"), "'video'"),
        (client.post("/v1/jobs", data={"video": [(io.BytesIO(media["video"]), "a.mp4"),
                                                 (io.BytesIO(media["video"]), "b.mp4")]},
                     content_type="multipart/form-data"), "more than once"),
        (submit(client, media["video"], transcript=(io.BytesIO(b"{not json"), "words.json")), "bad transcript"),
        (submit(client, media["video"], headers={"Idempotency-Key": "has spaces"}), "Idempotency-Key"),
    ]
    for response, phrase in checks:
        assert response.status_code == 400, (phrase, response.get_json())
        assert phrase in response.get_json()["error"]
    job = submit(client, media["video"]).get_json()
    response = client.get(f"/v1/jobs/{job['id']}/result?format=xml")
    assert response.status_code == 400 and "format" in response.get_json()["error"]


def test_unknown_job_ids_are_404(client) -> None:  # noqa: ANN001
    for job_id in ("0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF", "1" * 33,
                   "..%2F..%2Fetc%2Fpasswd", "1' OR '1'='1", "%00"):
        for suffix in ("", "/result", "/plot.png"):
            response = client.get(f"/v1/jobs/{job_id}{suffix}")
            assert response.status_code == 404, (job_id, suffix)
            assert "error" in response.get_json()
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 404


def test_the_same_upload_with_an_idempotency_key_gives_one_job(client, env, media) -> None:  # noqa: ANN001
    broker = redis.Redis.from_url(env["EMPATHY_REDIS_URL"])
    key = {"Idempotency-Key": "upload-2024-05-01-clip"}
    first = submit(client, media["video"], headers=key, modalities="audio")
    again = submit(client, media["video"], headers=key, modalities="audio")
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert broker.llen("audio") == 1  # one chord sent, not two
    storage = Path(env["EMPATHY_STORAGE_DIR"])
    assert [p.name for p in (storage / "jobs").iterdir()] == [first.get_json()["id"]]

    different = submit(client, media["silent_video"], headers=key, modalities="audio")
    assert different.status_code == 422 and "different upload" in different.get_json()["error"]
    other_client = submit(client, media["video"], headers={**key, **bearer("bob")}, modalities="audio")
    assert other_client.status_code == 202  # keys are per API key: bob's is a new job
    assert other_client.get_json()["id"] != first.get_json()["id"]
    without_key = submit(client, media["video"], modalities="audio")
    assert without_key.status_code == 202 and without_key.get_json()["id"] != first.get_json()["id"]
    assert broker.llen("audio") == 3
    assert json.loads(broker.lindex("audio", 0))["content-type"] == "application/json"


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "bound") -> bytes:
    """A multipart body of (name, filename or None, content) parts."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_the_form_is_bounded_in_parts_files_and_field_size(env, media) -> None:  # noqa: ANN001
    """Before: a 50 MB text field was refused as "upload larger than 1024 MiB"; 999 one-byte file parts opened
    999 temporary files each (24 such requests: 19 986 file descriptors, then 500s)."""
    from gateway.app import create_app
    from tests.ensemble_support import environment

    storage = Path(env["EMPATHY_STORAGE_DIR"])
    with environment({**env, "EMPATHY_MAX_UPLOAD_MB": "64"}):
        client = create_app().test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = bearer("alice")["Authorization"]

        def post(body: bytes):  # noqa: ANN202
            return client.post("/v1/jobs", data=body, content_type="multipart/form-data; boundary=bound")

        cases = {
            "a 50 MB text field": ([("subject", None, b"1" * (50 << 20))],
                                   "form field 'subject' is larger than 8 KiB"),
            "999 one-byte files": ([("video", f"v{i}.mp4", b"x") for i in range(999)],
                                   "more than 2 files in the form"),
            "40 text fields": ([("modalities", None, b"audio")] * 40, "more than 16 parts in the form"),
        }
        for what, (parts, message) in cases.items():
            response = post(_multipart(parts))
            assert response.status_code == 413, (what, response.get_json())
            assert message in response.get_json()["error"], what
            assert response.headers["Connection"] == "close"
            assert leftovers(storage) == [], what
        urlencoded = client.post("/v1/jobs", data=b"subject=" + b"1" * 200_000,
                                 content_type="application/x-www-form-urlencoded")
        assert urlencoded.status_code == 413 and "URL-encoded form" in urlencoded.get_json()["error"]
        # within the limits: accepted as before
        ok = post(_multipart([("subject", None, b"3"), ("modalities", None, b"audio"),
                              ("modalities", None, b"body"), ("video", "clip.mp4", media["video"])]))
        assert ok.status_code == 202, ok.get_json()
        metrics = client.get("/metrics").get_data(as_text=True)
        for reason in ("form_field_too_large", "form_file_parts", "form_parts", "form_too_large"):
            assert f'empathy_refused_requests_total{{reason="{reason}",status="413"}} 1.0' in metrics


@pytest.mark.parametrize(("form", "message"), [
    ({"fusion": "audio=inf"}, "finite number >= 0"),
    ({"fusion": "audio=nan,text=1"}, "finite number >= 0"),
    ({"fusion": "audio=-1"}, "finite number >= 0"),
    ({"fusion": "audio=0,text=0"}, "all zero"),
    ({"fusion": "audio=x"}, "not a number"),
    ({"fusion": "text=1", "modalities": "audio,body"}, "weight 0 to every requested modality"),
    ({"fusion": "audio=1," * 40}, "longer than 200"),
    ({"listener": "0,0,0.02,0.5"}, "is 1x24 pixels of the 64x48 video; at least 32x32"),
    ({"listener": "1=full;*=0.5,0.5,0.6,1"}, "is 6x24 pixels"),
    ({"listener": "0,0,nan,1"}, "listener:"),
])
def test_values_that_would_fail_later_are_400_at_submit(client, env, media, form, message) -> None:  # noqa: ANN001
    """Before: fusion weights inf, nan or all zero, and a 1x0-pixel listener box got 202; the job then failed
    ("Out of range float values are not JSON compliant", "no module to fuse", "detect_faces needs a 2-D ...")."""
    response = submit(client, media["video"], **form)
    assert response.status_code == 400, response.get_json()
    assert message in response.get_json()["error"]
    assert leftovers(Path(env["EMPATHY_STORAGE_DIR"])) == []


def test_values_within_the_checks_are_accepted(client, media) -> None:  # noqa: ANN001
    for form in ({"fusion": "audio=1,text=0", "modalities": "audio,text"}, {"listener": "0,0,0.5,1"},
                 {"listener": "3=0.5,0,1,1;*=full"}, {"fusion": "paper"}):
        assert submit(client, media["video"], **form).status_code == 202, form
