"""empathy_client.Client over real HTTP: against the real gateway (a werkzeug server of ``create_app()`` on a
real Redis; no workers, so jobs stay queued) for submit / replay / list / delete / typed jobs, and against a
scripted HTTP server for the retries (503, 429 with ``Retry-After`` as seconds or a date, unreachable)."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from empathy_client import ApiError, Client, Job
from empathy_client.batch import find_videos, idempotency_key, subject_of
from empathy_client.client import retry_after_seconds
from tests.ensemble_support import (
    API_TOKENS,
    api_keys_env,
    ensemble_env,
    environment,
    redis_db,
    write_tiny_video,
)


@pytest.fixture
def gateway(redis_url: str, tmp_path: Path) -> Iterator[str]:
    url = redis_db(redis_url, 12)
    redis.Redis.from_url(url).flushdb()
    values = ensemble_env(url, tmp_path / "storage", tmp_path / "models", EMPATHY_MODEL_SERVER="127.0.0.1:1",
                          **api_keys_env())
    with environment(values):
        from gateway.app import create_app

        server = make_server("127.0.0.1", 0, create_app(), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_port}"
        server.shutdown()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_video(tmp_path_factory.mktemp("client") / "Subject_3_Story_2.mp4")


def test_submit_list_and_delete_against_the_gateway(gateway: str, video: Path) -> None:
    client = Client(gateway, API_TOKENS["alice"])
    job = client.submit(video, subject=3, modalities=["audio", "text"], idempotency_key="k-1")
    assert isinstance(job, Job) and job.state == "queued" and job.subject == 3 and not job.replayed
    assert list(job.modalities) == ["audio", "text"] and job.modalities["audio"].status == "queued"
    again = client.submit(video, subject=3, modalities=["audio", "text"], idempotency_key="k-1")
    assert again.id == job.id and again.replayed
    other = client.submit(video, fields={"subject": "1", "modalities": "audio"})
    assert other.id != job.id and other.subject == 1
    assert [j.id for j in client.jobs().jobs] == [other.id, job.id]
    page = client.jobs(limit=1)
    assert [j.id for j in page.jobs] == [other.id] and page.next_cursor
    assert [j.id for j in client.iter_jobs(page_size=1)] == [other.id, job.id]
    assert list(client.iter_jobs(state="done")) == [] and list(client.iter_results()) == []
    assert Client(gateway, API_TOKENS["bob"]).jobs().jobs == []  # another key sees none of them
    client.delete(job.id)
    with pytest.raises(ApiError) as gone:
        client.job(job.id)
    assert gone.value.status == 404
    with pytest.raises(ApiError) as off:
        client.webhook_secret()
    assert off.value.status == 409 and "EMPATHY_WEBHOOK_SIGNING_KEY" in off.value.message


def test_a_refusal_is_raised_at_once_without_retries(gateway: str, video: Path) -> None:
    slept: list[float] = []
    with pytest.raises(ApiError) as refused:
        Client(gateway, "not-a-key-at-all-xxxx", sleep=slept.append).submit(video)
    assert refused.value.status == 401 and slept == []
    with pytest.raises(ApiError) as bad:
        Client(gateway, API_TOKENS["alice"], sleep=slept.append).submit(video, fields={"subjet": "1"})
    assert bad.value.status == 400 and "subjet" in bad.value.message and slept == []


class Scripted:
    """A real HTTP server answering each request with the next scripted (status, headers)."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests.append((self.command, self.path, dict(self.headers.items())))
                status, headers = outer.script[min(len(outer.requests), len(outer.script)) - 1]
                body = b'{"error": "busy"}' if status >= 400 else (
                    b'{"id": "%s", "state": "queued", "progress": 0, "modalities": {}}' % (b"a" * 32))
                self.send_response(status)
                for key, value in {**headers, "Content-Type": "application/json",
                                   "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's names

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_503_and_429_are_retried_honouring_retry_after(video: Path) -> None:
    server = Scripted([(503, {}), (429, {"Retry-After": "3"}), (503, {"Retry-After": "1"}), (202, {})])
    slept: list[float] = []
    job = Client(server.url, "key", sleep=slept.append, backoff_s=0.5).submit(video, idempotency_key="same")
    assert job.id == "a" * 32 and slept == [0.5, 3.0, 1.0]
    keys = {headers["Idempotency-Key"] for _, _, headers in server.requests}
    assert len(server.requests) == 4 and keys == {"same"}  # every retry is the same upload
    server.server.shutdown()


def test_retries_end_with_the_last_error(video: Path) -> None:
    server = Scripted([(503, {})])
    slept: list[float] = []
    with pytest.raises(ApiError) as failed:
        Client(server.url, "key", sleep=slept.append, retries=3, backoff_s=1, max_backoff_s=3).job("a" * 32)
    assert failed.value.status == 503 and slept == [1, 2, 3] and len(server.requests) == 4
    server.server.shutdown()
    server.server.server_close()  # nothing listens there now
    slept.clear()
    with pytest.raises(ApiError) as unreachable:
        Client(server.url, "key", sleep=slept.append, retries=2).job("a" * 32)
    assert unreachable.value.status == 0 and "cannot reach the gateway" in str(unreachable.value) and len(slept) == 2


def test_retry_after_as_seconds_or_date() -> None:
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= retry_after_seconds(in_ten) <= 10.5


def test_batch_helpers(tmp_path: Path, video: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("Subject_2_Story_1.mp4", "Subject_1_Story_1.mp4", "notes.txt"):
        (folder / name).write_bytes(video.read_bytes() if name.endswith(".mp4") else b"x")
    assert [p.name for p in find_videos([folder])] == ["Subject_1_Story_1.mp4", "Subject_2_Story_1.mp4"]
    assert [p.name for p in find_videos([str(folder / "Subject_2_*.mp4"), folder])] == [
        "Subject_2_Story_1.mp4", "Subject_1_Story_1.mp4"]
    with pytest.raises(FileNotFoundError):
        find_videos([str(tmp_path / "none-*.mp4")])
    assert subject_of(Path("Subject_12_Story_3.mp4")) == 12 and subject_of(Path("clip.mp4")) is None
    first = idempotency_key(folder / "Subject_1_Story_1.mp4", {"subject": "1"}, 1)
    assert first == idempotency_key(folder / "Subject_1_Story_1.mp4", {"subject": "1"}, 1)
    assert first != idempotency_key(folder / "Subject_1_Story_1.mp4", {"subject": "2"}, 1)
    assert first != idempotency_key(folder / "Subject_1_Story_1.mp4", {"subject": "1"}, 2)


def test_a_refused_file_fails_the_batch_with_its_reason_and_is_retried_next_run(gateway: str, tmp_path: Path) -> None:
    from empathy_client.batch import MANIFEST, run_batch

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "Subject_1_Story_1.mp4").write_bytes(b"not a video at all" * 50)
    out = tmp_path / "pred"
    out.mkdir()
    (out / ".Subject_1_Story_1.csv.77.1.part").write_bytes(b"half a CSV")  # left by a killed run
    events: list[tuple[str, str]] = []
    client = Client(gateway, API_TOKENS["alice"])
    report = run_batch(client, find_videos([folder]), out, on_event=lambda kind, name, _: events.append((kind, name)))
    (failed,) = report.failed
    assert failed.video.name == "Subject_1_Story_1.mp4" and failed.error.startswith("415: not a usable video")
    assert events == [("failed", "Subject_1_Story_1.mp4")] and not list(out.glob("*.csv"))
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]  # the stale temporary file is gone
    entry = json.loads((out / MANIFEST).read_text())["files"]["Subject_1_Story_1.mp4"]
    assert entry["state"] == "failed" and entry["attempt"] == 1 and "415" in entry["error"]
    run_batch(client, find_videos([folder]), out)
    entry = json.loads((out / MANIFEST).read_text())["files"]["Subject_1_Story_1.mp4"]
    assert entry["attempt"] == 2 and entry["key"].endswith("-2")  # a new attempt, a new idempotency key
