"""jobs.store.JobStore against a real Redis: the job hash, its public view, states, idempotency keys, TTLs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobs.request import JobRequest
from jobs.store import ACTIVE_KEY, IdempotencyConflict, JobStore, new_job_id
from shared.ports import free_port
from tests.ensemble_support import RedisServer, redis_db

TTL_S = 600
JOB = "a" * 32


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_db(redis_url, 15), decode_responses=True)
    connection.flushdb()
    yield connection
    connection.close()


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    return JobStore(client, ttl_s=TTL_S)


def _create(store: JobStore, job_id: str = JOB, modalities: tuple[str, ...] = ("audio", "body")) -> None:
    store.create(job_id, JobRequest(subject=4, modalities=modalities, listener="full"), filename="clip.mp4",
                 video="video.mp4", owner="f" * 64)


def test_a_new_job_is_queued_active_and_expires(store: JobStore, client: redis.Redis) -> None:
    before = time.time()
    _create(store)
    view = store.status(JOB)
    assert view is not None and view["state"] == "queued" and view["progress"] == 0.0
    assert view["subject"] == 4 and view["filename"] == "clip.mp4"
    assert view["modalities"] == {"audio": {"status": "queued", "progress": 0.0},
                                  "body": {"status": "queued", "progress": 0.0}}
    assert before - 0.001 <= view["created"] <= view["updated"] <= time.time() + 0.001  # stored to the ms
    assert "owner" not in view and "finished" not in view and "used" not in view
    assert store.owner(JOB) == "f" * 64 and store.raw(JOB)["listener"] == "full"
    assert store.active_jobs() == [JOB]
    assert TTL_S - 5 <= client.ttl(store.key(JOB)) <= TTL_S
    assert store.status("b" * 32) is None and store.owner("b" * 32) is None


def test_progress_counts_modalities_and_the_fusion_still_to_come(store: JobStore) -> None:
    _create(store)
    assert store.update_modality(JOB, "audio", status="ok", progress=1.0, seconds=2.345678, worker="audio-1@h")
    assert store.update_modality(JOB, "body", status="predicting", progress=0.5, detail="")
    view = store.status(JOB)
    assert view["state"] == "running"  # the first modality that starts moves the job
    assert view["progress"] == pytest.approx((1.0 + 0.5) / 3, abs=1e-3)  # two modalities + the fusion
    assert view["modalities"]["audio"] == {"status": "ok", "progress": 1.0, "seconds": 2.346, "worker": "audio-1@h"}
    assert store.raw(JOB)["audio.worker"] == "audio-1@h"
    assert store.update_modality(JOB, "body", status="failed", progress=0.5, detail="no face")
    assert store.status(JOB)["modalities"]["body"]["detail"] == "no face"
    assert store.status(JOB)["progress"] == pytest.approx(2 / 3, abs=1e-3)  # a failed modality is finished too


def test_a_finished_job_is_final_and_leaves_the_active_set(store: JobStore) -> None:
    _create(store)
    store.update_modality(JOB, "audio", status="ok", progress=1.0)
    store.update_modality(JOB, "body", status="unavailable", progress=1.0, detail="no body")
    assert store.finish(JOB, result="/storage/jobs/x/result.json", used=["audio"], worker="fusion-1@h")
    view = store.status(JOB)
    assert view["state"] == "done" and view["progress"] == 1.0 and view["used"] == ["audio"]
    assert view["degraded"] is True and view["finished"] >= view["created"]
    assert store.active_jobs() == []
    store.update_modality(JOB, "body", status="ok", progress=1.0)  # a late duplicate never reopens the job
    assert store.status(JOB)["state"] == "done"

    other = "c" * 32
    _create(store, other, ("audio",))
    store.update_modality(other, "audio", status="ok", progress=1.0)
    store.finish(other, result="r.json", used=["audio"])
    assert store.status(other)["degraded"] is False
    failed = "d" * 32
    _create(store, failed, ("audio",))
    assert store.finish(failed, error="nothing to fuse")
    assert store.status(failed)["state"] == "failed" and store.status(failed)["error"] == "nothing to fuse"
    assert "used" not in store.status(failed)


def test_writes_to_a_deleted_job_are_refused_and_recreate_nothing(store: JobStore, client: redis.Redis) -> None:
    _create(store)
    assert store.delete(JOB) and not store.delete(JOB)
    assert store.active_jobs() == []
    assert store.update_modality(JOB, "audio", status="ok", progress=1.0) is False
    assert store.finish(JOB, result="r.json") is False
    store.heartbeat(JOB, "audio")
    assert not client.exists(store.key(JOB))  # no half job left behind by a worker still running


def test_every_write_refreshes_the_time_to_live(store: JobStore, client: redis.Redis) -> None:
    _create(store)
    for write in (lambda: store.update_modality(JOB, "audio", status="preparing", progress=0.1),
                  lambda: store.heartbeat(JOB, "audio"), lambda: store.start_attempt(JOB, "audio"),
                  lambda: store.set_task_ids(JOB, ["t1"]), lambda: store.requeued(JOB, "audio"),
                  lambda: store.finish(JOB, result="r.json")):
        client.expire(store.key(JOB), 5)
        write()
        assert client.ttl(store.key(JOB)) > 5


def test_deliveries_heartbeats_and_requeues(store: JobStore) -> None:
    _create(store)
    assert [store.start_attempt(JOB, "body") for _ in range(3)] == [1, 2, 3]
    assert store.status(JOB)["modalities"]["body"]["attempts"] == 3
    assert "attempts" not in store.status(JOB)["modalities"]["audio"]
    assert "worker" not in store.status(JOB)["modalities"]["body"]  # no worker has said who it is yet
    store.update_modality(JOB, "body", status="preparing", progress=0.01, worker="body@h2-1")
    assert store.status(JOB)["modalities"]["body"]["worker"] == "body@h2-1"
    queued_beat = float(store.raw(JOB)["body.heartbeat"])
    time.sleep(0.01)
    store.update_modality(JOB, "body", status="predicting", progress=0.4)
    store.heartbeat(JOB, "body")
    assert float(store.raw(JOB)["body.heartbeat"]) > queued_beat
    store.requeued(JOB, "body")
    assert store.status(JOB)["modalities"]["body"]["status"] == "queued"
    store.set_task_ids(JOB, ["t-1", "t-2"])
    assert store.task_ids(JOB) == ["t-1", "t-2"] and store.task_ids("e" * 32) == []


def test_an_idempotency_key_names_one_job_per_owner_and_upload(store: JobStore, client: redis.Redis) -> None:
    assert store.claim_idempotency_key("alice", "retry-1", JOB, "sha-of-upload") is None
    assert store.claim_idempotency_key("alice", "retry-1", "b" * 32, "sha-of-upload") == JOB  # the same upload again
    with pytest.raises(IdempotencyConflict, match=f"different upload \\(job {JOB}\\)"):
        store.claim_idempotency_key("alice", "retry-1", "b" * 32, "sha-of-another-upload")
    assert store.claim_idempotency_key("bob", "retry-1", "c" * 32, "sha-of-upload") is None  # keys are per owner
    assert TTL_S - 5 <= client.ttl(store.idempotency_key("alice", "retry-1")) <= TTL_S
    assert "retry-1" not in store.idempotency_key("alice", "retry-1")  # stored hashed
    store.release_idempotency_key("alice", "retry-1")
    assert store.claim_idempotency_key("alice", "retry-1", "d" * 32, "sha-of-another-upload") is None


def test_concurrent_claims_of_one_key_make_one_job(store: JobStore) -> None:
    winners: list[str] = []
    ids = [new_job_id() for _ in range(8)]

    def claim(job_id: str) -> None:
        bound = store.claim_idempotency_key("alice", "same", job_id, "sha")
        winners.append(job_id if bound is None else bound)

    threads = [threading.Thread(target=claim, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 8 and len(set(winners)) == 1 and winners[0] in ids


def test_a_worker_store_waits_out_a_redis_outage(tmp_path: Path) -> None:
    """``outage_s``: a write during a restart of Redis succeeds once it is back, instead of raising."""
    server = RedisServer(tmp_path / "redis", free_port()).start()
    try:
        worker = JobStore.from_url(server.url, ttl_s=TTL_S, outage_s=20)
        gateway = JobStore.from_url(server.url, ttl_s=TTL_S)
        _create(worker)
        server.stop()
        with pytest.raises(redis.ConnectionError):
            gateway.status(JOB)  # the gateway's store fails at once (it answers 503)
        restart = threading.Timer(1.5, server.start)
        restart.start()
        started = time.monotonic()
        assert worker.update_modality(JOB, "audio", status="ok", progress=1.0)
        restart.join()
        assert time.monotonic() - started >= 1.0
        assert worker.status(JOB)["modalities"]["audio"]["status"] == "ok"  # the job survived (append-only file)
        assert ACTIVE_KEY in {k for k in redis.Redis.from_url(server.url, decode_responses=True).scan_iter()}
    finally:
        server.stop()


def test_started_is_kept_when_the_first_modality_starts(store: JobStore) -> None:
    _create(store)
    assert "started" not in store.status(JOB)
    before = time.time()
    store.update_modality(JOB, "audio", status="preparing", progress=0.01)
    started = store.status(JOB)["started"]
    assert before - 0.001 <= started <= time.time() + 0.001
    time.sleep(0.01)
    store.update_modality(JOB, "body", status="preparing", progress=0.01)
    assert store.status(JOB)["started"] == started


def test_listing_pages_through_one_owners_jobs_newest_first(store: JobStore, client: redis.Redis) -> None:
    ids = [f"{i:032x}" for i in range(7)]
    for job_id in ids:
        store.create(job_id, JobRequest(modalities=("audio",)), filename=f"{job_id[-1]}.mp4", video="v.mp4",
                     owner="alice")
        time.sleep(0.002)
    store.create("f" * 32, JobRequest(modalities=("audio",)), filename="bob.mp4", video="v.mp4", owner="bob")
    store.finish(ids[1], result="r.json", used=["audio"])
    store.finish(ids[4], error="boom")
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_jobs("alice", limit=3, cursor=cursor)
        seen += [view["id"] for view in page]
        pages += 1
        if cursor is None:
            break
    assert seen == ids[::-1] and pages == 3
    assert [v["id"] for v in store.list_jobs("alice", states=["done", "failed"])[0]] == [ids[4], ids[1]]
    assert [v["id"] for v in store.list_jobs("bob")[0]] == ["f" * 32]
    assert store.list_jobs("nobody") == ([], None)
    client.delete(store.key(ids[6]))  # expired
    page, cursor = store.list_jobs("alice", limit=2)
    assert [v["id"] for v in page] == [ids[5], ids[4]] and cursor is not None
    assert ids[6] not in client.zrange("empathy:jobs-of:alice", 0, -1)
    store.delete(ids[5])
    assert ids[5] not in client.zrange("empathy:jobs-of:alice", 0, -1)


def test_jobs_created_in_the_same_millisecond_are_each_listed_once(store: JobStore, client: redis.Redis) -> None:
    ids = [f"{i:032x}" for i in range(5)]
    for job_id in ids:
        store.create(job_id, JobRequest(modalities=("audio",)), filename="x.mp4", video="v.mp4", owner="carol")
    client.zadd("empathy:jobs-of:carol", dict.fromkeys(ids, 1700000000.123))  # one creation time for all
    seen, cursor = [], None
    for _ in range(10):
        page, cursor = store.list_jobs("carol", limit=2, cursor=cursor)
        seen += [view["id"] for view in page]
        if cursor is None:
            break
    assert seen == ids[::-1]
