"""services.courier against a real Redis and real HTTP receivers: a finished job's callback is delivered,
signed, retried with back-off until a bounded time, every attempt recorded on the job; a slow receiver
never delays another job's callback; a URL the policy refuses is recorded as refused, never called."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from empathy_client.webhooks import SIGNATURE_HEADER, secret_for, verify
from jobs.request import JobRequest
from jobs.store import CALLBACKS_KEY, JobStore
from services.courier import Courier, backoff
from shared.settings import Settings
from tests.ensemble_support import redis_db
from tests.webhook_receiver import Receiver

OWNER = "e" * 64
SETTINGS = Settings(callback_hosts="127.0.0.1", callback_allow_http=True, callback_allow_networks="127.0.0.1/32",
                    webhook_signing_key="test-signing-key", callback_timeout_s=10, callback_retry_s=60,
                    callback_threads=4)


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    client = redis.Redis.from_url(redis_db(redis_url, 14), decode_responses=True)
    client.flushdb()
    yield JobStore(client, ttl_s=600)
    client.close()


@pytest.fixture
def courier(store: JobStore) -> Iterator[Courier]:
    with _running(store, SETTINGS) as running:
        yield running


@contextmanager
def _running(store: JobStore, settings: Settings) -> Iterator[Courier]:
    courier = Courier(store, settings)
    thread = threading.Thread(target=courier.run, daemon=True)
    thread.start()
    yield courier
    courier.stop()
    thread.join(timeout=5)


def _finished_job(store: JobStore, job_id: str, url: str, *, error: str | None = None) -> float:
    store.create(job_id, JobRequest(subject=1, modalities=("audio",), callback_url=url), filename="clip.mp4",
                 video="video.mp4", owner=OWNER)
    store.update_modality(job_id, "audio", status="ok", progress=1.0)
    store.finish(job_id, result="result.json", used=["audio"], error=error)
    return time.time()


def _callback(store: JobStore, job_id: str) -> dict:
    view = store.status(job_id)
    assert view is not None
    return view["callback"]


def test_backoff_doubles_up_to_five_minutes() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 10, 30)] == [1, 2, 4, 8, 300, 300]


def test_a_finished_job_is_posted_signed_and_recorded(store: JobStore, courier: Courier) -> None:
    with Receiver() as receiver:
        finished = _finished_job(store, "1" * 32, receiver.url)
        (received,) = receiver.wait(1, timeout=10)
        time.sleep(0.3)
    latency = received.at - finished
    assert latency < 2.0, latency
    event = verify(secret_for(SETTINGS.webhook_signing_key, OWNER), received.headers[SIGNATURE_HEADER], received.body)
    assert event["event"] == "job.done" and event["job"]["id"] == "1" * 32 and event["job"]["state"] == "done"
    assert "callback" not in event["job"] and event["job"]["used"] == ["audio"]
    callback = _callback(store, "1" * 32)
    assert callback["state"] == "delivered" and callback["url"] == receiver.url
    assert [a["status"] for a in callback["attempts"]] == [200]
    assert store.client.zcard(CALLBACKS_KEY) == 0


def test_a_failed_job_is_posted_too(store: JobStore, courier: Courier) -> None:
    with Receiver() as receiver:
        _finished_job(store, "2" * 32, receiver.url, error="FusionError: nothing fused")
        (received,) = receiver.wait(1, timeout=10)
    assert received.headers["Empathy-Event"] == "job.failed" and b"nothing fused" in received.body


def test_failures_are_retried_with_backoff_and_each_attempt_recorded(store: JobStore, courier: Courier) -> None:
    with Receiver(answers=(500, 503, 200)) as receiver:
        _finished_job(store, "3" * 32, receiver.url)
        received = receiver.wait(3, timeout=15)
        time.sleep(0.3)
    gaps = [b.at - a.at for a, b in zip(received, received[1:], strict=False)]
    assert 0.9 <= gaps[0] < 2.0 and 1.9 <= gaps[1] < 3.5, gaps  # 1 s, then 2 s
    callback = _callback(store, "3" * 32)
    assert callback["state"] == "delivered"
    assert [a["status"] for a in callback["attempts"]] == [500, 503, 200]
    assert "500" in callback["attempts"][0]["error"] and "next_attempt" not in callback


def test_retries_stop_after_the_bounded_time(store: JobStore) -> None:
    settings = Settings(**{**SETTINGS.__dict__, "callback_retry_s": 2.5})
    with Receiver(answers=(500,)) as receiver:
        with _running(store, settings):
            _finished_job(store, "4" * 32, receiver.url)
            deadline = time.monotonic() + 15
            while _callback(store, "4" * 32)["state"] != "failed" and time.monotonic() < deadline:
                time.sleep(0.1)
    callback = _callback(store, "4" * 32)
    assert callback["state"] == "failed" and [a["status"] for a in callback["attempts"]] == [500, 500]
    assert len(receiver.received) == 2 and store.client.zcard(CALLBACKS_KEY) == 0


def test_a_slow_receiver_never_delays_another_jobs_callback(store: JobStore, courier: Courier) -> None:
    with Receiver(delay_s=4) as slow, Receiver() as fast:
        _finished_job(store, "5" * 32, slow.url)
        slow.wait(1, timeout=5)  # the slow one holds a delivery thread now
        finished = _finished_job(store, "6" * 32, fast.url)
        (received,) = fast.wait(1, timeout=3)
        assert received.at - finished < 1.0
        assert _callback(store, "5" * 32)["state"] == "pending"  # still waiting on its receiver
        deadline = time.monotonic() + 10
        while _callback(store, "5" * 32)["state"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.1)
    assert _callback(store, "5" * 32)["state"] == "delivered"


def test_a_url_the_policy_refuses_is_recorded_and_never_called(store: JobStore) -> None:
    settings = Settings(**{**SETTINGS.__dict__, "callback_allow_networks": ""})  # 127.0.0.1 no longer allowed
    with Receiver() as receiver:
        with _running(store, settings):
            _finished_job(store, "7" * 32, receiver.url)
            deadline = time.monotonic() + 5
            while _callback(store, "7" * 32)["state"] != "refused" and time.monotonic() < deadline:
                time.sleep(0.05)
        assert receiver.received == []
    callback = _callback(store, "7" * 32)
    assert callback["state"] == "refused" and "not a public address" in callback["attempts"][0]["error"]


def test_a_deleted_job_leaves_the_outbox(store: JobStore) -> None:
    _finished_job(store, "8" * 32, "http://127.0.0.1:9/hook")
    assert store.client.zcard(CALLBACKS_KEY) == 1
    store.delete("8" * 32)
    assert store.client.zcard(CALLBACKS_KEY) == 0


def test_a_claim_is_leased_to_one_courier(store: JobStore) -> None:
    _finished_job(store, "9" * 32, "http://127.0.0.1:9/hook")
    assert store.claim_callback(lease_s=0.5) == "9" * 32
    assert store.claim_callback(lease_s=0.5) is None  # leased
    time.sleep(0.6)
    assert store.claim_callback(lease_s=0.5) == "9" * 32  # the lease ran out: a courier that died loses it
