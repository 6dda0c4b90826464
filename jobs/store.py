"""The job store: one Redis hash per analysis job, written by the gateway and the workers, read by clients.

Redis holds state only (small strings: states, progress, errors, blob names); the video and every series
live in the job storage (:mod:`jobs.files`). Each worker updates only the fields of its own
modality, so concurrent updates never overwrite each other, and every write refreshes the key's TTL.

Hash ``empathy:job:<id>`` fields::

    state            queued | running | done | failed
    created/updated  epoch seconds;  started  when the first modality started;  finished  when it ended
    owner            sha256 of the API key that created the job ("" with authentication off); never shown
    subject, modalities, fusion, listener...   the job's request (jobs.request.JobRequest.to_hash)
    filename, video (the upload's blob name), task_ids (JSON list, for revoke)
    result           blob name of the result once fused;  error  when the job failed
    used             comma list of the modalities fusion used (degraded: a requested one not ok)
    <m>.status       queued | preparing | predicting | postprocessing | ok | unavailable | failed
    <m>.progress     0..1;  <m>.detail  error or reason;  <m>.seconds;  <m>.worker (hostname)
    <m>.attempts     deliveries of the modality's task (a re-delivered task after a worker died counts 2)
    <m>.heartbeat    epoch seconds: set when queued, refreshed by the running task (watchdog's lease)
    fusion.worker    hostname of the fusion worker;  fusion.requested  when the watchdog last sent fusion
    callback.state   pending | delivered | failed | refused (only with a callback_url)
    callback.attempts  JSON list of the delivery attempts ({at, status, seconds, error}), the last 20
    callback.next    epoch seconds of the next attempt while pending

Jobs not yet finished are also members of the sorted set ``empathy:active`` (score: creation time): the
watchdog (:mod:`services.watchdog`) looks only at those.

Every job is also a member of its owner's sorted set ``empathy:jobs-of:<owner>`` (score: creation time),
which ``GET /v1/jobs`` pages through newest first; members whose hash expired are dropped as they are met.
A finished job with a callback waits in the sorted set ``empathy:callbacks`` (score: when its next delivery
attempt is due) for a fusion worker's courier (:mod:`services.courier`).

Idempotency keys (``POST /v1/jobs`` with ``Idempotency-Key``) live beside the jobs as
``empathy:idem:<owner>:<sha256 of the key>`` -> ``<job id> <fingerprint of the upload>``, with the jobs' TTL.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jobs.request import JobRequest

KEY_PREFIX = "empathy:job:"
ACTIVE_KEY = "empathy:active"
IDEMPOTENCY_PREFIX = "empathy:idem:"
OWNER_JOBS_PREFIX = "empathy:owner-jobs:"  # + owner: a key's jobs not yet seen finished (sorted set)
OWNER_SUBMITS_PREFIX = "empathy:owner-submits:"  # + owner: when a key's recent jobs were accepted (sorted set)
OWNER_INDEX_PREFIX = "empathy:jobs-of:"
CALLBACKS_KEY = "empathy:callbacks"
MAX_RECORDED_ATTEMPTS = 20
MAX_PAGE = 100
_SCAN_PER_PAGE = 1000  # owner-index entries looked at for one page at most (a state filter may skip many)
CURSOR_RE = re.compile(r"^[0-9]{1,12}\.[0-9]{3}-[0-9a-f]{32}$")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATES = (QUEUED, RUNNING, DONE, FAILED)
FINAL_STATES = (DONE, FAILED)
PENDING, DELIVERED, REFUSED = "pending", "delivered", "refused"  # callback states (and FAILED)
MODALITY_FINAL = ("ok", "unavailable", "failed")


def new_job_id() -> str:
    """128 random bits from the OS CSPRNG: a job id cannot be guessed or enumerated."""
    return secrets.token_hex(16)


def valid_job_id(job_id: str) -> bool:
    """Ids are 32 lowercase hex digits: anything else is rejected before it reaches Redis or the file system."""
    return bool(JOB_ID_RE.match(job_id))


class IdempotencyConflict(Exception):
    """An idempotency key already names a job of a *different* upload (or one still being created)."""


class JobStore:
    def __init__(self, client: redis.Redis, *, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, *, ttl_s: int, outage_s: float = 0.0) -> JobStore:
        """A store on its own connection pool; ``outage_s`` > 0: every call retries through a Redis outage.

        Workers use ``outage_s`` (``EMPATHY_REDIS_OUTAGE_S``): a job-store write inside a task must wait for
        Redis to come back instead of raising out of the task (which broke the chord and left the job
        ``running``). Each retry waits at most 2 s, so the calls give up after about ``outage_s``. The
        gateway uses no retry: a request answers 503 at once instead.
        """
        if outage_s <= 0:
            return cls(redis.Redis.from_url(url, decode_responses=True), ttl_s=ttl_s)
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), int(outage_s / 2.0) + 3,
                      supported_errors=(redis.ConnectionError, redis.TimeoutError, OSError))
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5,
                                      retry=retry)
        return cls(client, ttl_s=ttl_s)

    @staticmethod
    def key(job_id: str) -> str:
        return KEY_PREFIX + job_id

    def _write(self, job_id: str, fields: Mapping[str, Any]) -> None:
        mapping = {k: ("" if v is None else str(v)) for k, v in fields.items()}
        mapping["updated"] = f"{time.time():.3f}"
        pipe = self.client.pipeline()
        pipe.hset(self.key(job_id), mapping=mapping)
        pipe.expire(self.key(job_id), self.ttl_s)
        pipe.execute()

    def create(self, job_id: str, request: JobRequest, *, filename: str, video: str, owner: str = "") -> None:
        """Record a new job: its request's fields (:meth:`JobRequest.to_hash`), the client's file name, the
        upload's blob name, the owner."""
        fields: dict[str, Any] = {
            "state": QUEUED, "created": f"{time.time():.3f}", "owner": owner, **request.to_hash(),
            "filename": filename, "video": video, "task_ids": "[]", "result": "", "error": "",
        }
        for name in request.modalities:
            fields[f"{name}.status"] = QUEUED
            fields[f"{name}.progress"] = 0.0
            fields[f"{name}.detail"] = ""
            fields[f"{name}.heartbeat"] = fields["created"]
        self._write(job_id, fields)
        pipe = self.client.pipeline()
        pipe.zadd(ACTIVE_KEY, {job_id: float(fields["created"])})
        pipe.zadd(OWNER_INDEX_PREFIX + owner, {job_id: float(fields["created"])})
        pipe.expire(OWNER_INDEX_PREFIX + owner, self.ttl_s)
        pipe.execute()

    def active_jobs(self) -> list[str]:
        """Jobs created and not yet seen finished (oldest first)."""
        return list(self.client.zrange(ACTIVE_KEY, 0, -1))

    def forget_active(self, job_id: str) -> None:
        self.client.zrem(ACTIVE_KEY, job_id)

    def heartbeat(self, job_id: str, modality: str) -> None:
        """A running task is alive (the watchdog re-queues a modality whose heartbeat is older than a lease)."""
        if self.exists(job_id):
            self._write(job_id, {f"{modality}.heartbeat": f"{time.time():.3f}"})

    def requeued(self, job_id: str, modality: str) -> None:
        """The watchdog sent a modality's task again: queued, with a fresh lease."""
        self._write(job_id, {f"{modality}.status": QUEUED, f"{modality}.heartbeat": f"{time.time():.3f}"})

    def exists(self, job_id: str) -> bool:
        return bool(self.client.exists(self.key(job_id)))

    def raw(self, job_id: str) -> dict[str, str]:
        return self.client.hgetall(self.key(job_id))

    def owner(self, job_id: str) -> str | None:
        """The owner hash of a job (``""`` when created without authentication), None when unknown."""
        return self.client.hget(self.key(job_id), "owner") if self.exists(job_id) else None

    def start_attempt(self, job_id: str, modality: str) -> int:
        """Count one more delivery of a modality's task; returns the count (1 on the first delivery)."""
        pipe = self.client.pipeline()
        pipe.hincrby(self.key(job_id), f"{modality}.attempts", 1)
        pipe.expire(self.key(job_id), self.ttl_s)
        return int(pipe.execute()[0])

    # --- per-key accounting (the gateway's per-key limits) ---------------------------------------------
    def record_accepted(self, owner: str, job_id: str) -> None:
        """Count a job the gateway accepted for ``owner``: once among its unfinished jobs, once in its rate."""
        now = time.time()
        pipe = self.client.pipeline()
        pipe.zadd(OWNER_JOBS_PREFIX + owner, {job_id: now})
        pipe.expire(OWNER_JOBS_PREFIX + owner, self.ttl_s)
        pipe.zadd(OWNER_SUBMITS_PREFIX + owner, {job_id: now})
        pipe.expire(OWNER_SUBMITS_PREFIX + owner, 3600)
        pipe.execute()

    def unfinished_jobs(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or running. Jobs finished, deleted or expired are dropped
        from the count here, when it is read, so the workers need not know about it."""
        name = OWNER_JOBS_PREFIX + owner
        ids = self.client.zrange(name, 0, -1)
        if not ids:
            return 0
        pipe = self.client.pipeline()
        for job_id in ids:
            pipe.hget(self.key(job_id), "state")
        gone = [job_id for job_id, state in zip(ids, pipe.execute(), strict=True) if state not in (QUEUED, RUNNING)]
        if gone:
            self.client.zrem(name, *gone)
        return len(ids) - len(gone)

    def accepted_since(self, owner: str, since: float) -> list[float]:
        """When ``owner``'s jobs accepted at or after ``since`` (epoch seconds) were accepted, oldest first."""
        name = OWNER_SUBMITS_PREFIX + owner
        pipe = self.client.pipeline()
        pipe.zremrangebyscore(name, "-inf", f"({since}")
        pipe.zrange(name, 0, -1, withscores=True)
        return [score for _, score in pipe.execute()[1]]

    # --- idempotency ---------------------------------------------------------------------------------
    @staticmethod
    def idempotency_key(owner: str, key: str) -> str:
        return f"{IDEMPOTENCY_PREFIX}{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim_idempotency_key(self, owner: str, key: str, job_id: str, fingerprint: str) -> str | None:
        """Bind ``key`` to ``job_id`` unless it is bound already; returns the job id it was bound to before.

        Atomic (SET NX), so two simultaneous submissions with one key make one job. Raises
        :class:`IdempotencyConflict` when the key was used for a different upload.
        """
        name = self.idempotency_key(owner, key)
        if self.client.set(name, f"{job_id} {fingerprint}", nx=True, ex=self.ttl_s):
            return None
        existing = self.client.get(name)
        if existing is None:  # expired between the two calls: claim it again
            return self.claim_idempotency_key(owner, key, job_id, fingerprint)
        bound_job, _, bound_fingerprint = existing.partition(" ")
        if bound_fingerprint != fingerprint:
            raise IdempotencyConflict(f"idempotency key already used for a different upload (job {bound_job})")
        return bound_job

    def release_idempotency_key(self, owner: str, key: str) -> None:
        """Forget a key whose job could not be created, so that a retry with it can succeed."""
        self.client.delete(self.idempotency_key(owner, key))

    def set_task_ids(self, job_id: str, task_ids: Sequence[str]) -> None:
        self._write(job_id, {"task_ids": json.dumps(list(task_ids))})

    def task_ids(self, job_id: str) -> list[str]:
        raw = self.client.hget(self.key(job_id), "task_ids")
        return json.loads(raw) if raw else []

    def update_modality(self, job_id: str, modality: str, *, status: str, progress: float,
                        detail: str | None = None, seconds: float | None = None, worker: str | None = None) -> bool:
        """Record a modality's progress; False (nothing written) when the job no longer exists (deleted)."""
        if not self.exists(job_id):
            return False
        fields: dict[str, Any] = {f"{modality}.status": status, f"{modality}.progress": round(float(progress), 3)}
        if detail is not None:
            fields[f"{modality}.detail"] = detail
        if seconds is not None:
            fields[f"{modality}.seconds"] = round(float(seconds), 3)
        if worker is not None:
            fields[f"{modality}.worker"] = worker
        self._write(job_id, fields)
        # queued -> running on the first modality that starts (its time kept); never move a finished job back.
        self.client.eval(
            "if redis.call('HGET', KEYS[1], 'state') == ARGV[1] then "
            "redis.call('HSET', KEYS[1], 'state', ARGV[2], 'started', ARGV[3]) end",
            1, self.key(job_id), QUEUED, RUNNING, f"{time.time():.3f}",
        )
        return True

    def finish(self, job_id: str, *, result: str | None = None, error: str | None = None,
               worker: str | None = None, used: Sequence[str] | None = None) -> bool:
        """Mark the job done (with its result path and the modalities fused) or failed (with the error)."""
        if not self.exists(job_id):
            return False
        fields: dict[str, Any] = {"state": DONE if error is None else FAILED, "finished": f"{time.time():.3f}"}
        if result is not None:
            fields["result"] = result
        if used is not None:
            fields["used"] = ",".join(used)
        if error is not None:
            fields["error"] = error
        if worker is not None:
            fields["fusion.worker"] = worker
        callback = bool(self.client.hget(self.key(job_id), "callback_url"))
        if callback:
            fields.update({"callback.state": PENDING, "callback.next": fields["finished"]})
        self._write(job_id, fields)
        self.forget_active(job_id)
        if callback:  # the courier's outbox: due at once
            self.client.zadd(CALLBACKS_KEY, {job_id: float(fields["finished"])})
        return True

    def delete(self, job_id: str) -> bool:
        owner = self.owner(job_id)
        pipe = self.client.pipeline()
        pipe.zrem(ACTIVE_KEY, job_id)
        pipe.zrem(CALLBACKS_KEY, job_id)
        if owner is not None:
            pipe.zrem(OWNER_INDEX_PREFIX + owner, job_id)
        pipe.delete(self.key(job_id))
        return bool(pipe.execute()[-1])

    # --- listing ---------------------------------------------------------------------------------------
    def list_jobs(self, owner: str, *, states: Sequence[str] = (), limit: int = 20,
                  cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``owner``'s jobs, newest first: (views, cursor of the next page, None at the end).

        ``states``: only jobs in one of these states. The cursor (``<created>-<id>`` of the last job looked
        at) is opaque to clients. A page looks at ``_SCAN_PER_PAGE`` entries at most, so with a filter that
        skips many it may hold fewer than ``limit`` jobs and still have a cursor. Entries of expired jobs
        are removed from the index as they are met.
        """
        name = OWNER_INDEX_PREFIX + owner
        limit = max(1, min(MAX_PAGE, limit))
        top, _, after_id = (cursor or "+inf-").partition("-")
        views: list[dict[str, Any]] = []
        scanned, offset, last = 0, 0, None
        while len(views) < limit and scanned < _SCAN_PER_PAGE:
            chunk = self.client.zrevrangebyscore(name, top, "-inf", start=offset, num=100, withscores=True)
            if not chunk:
                return views, None
            offset += len(chunk)
            expired = []
            for job_id, score in chunk:
                if after_id and f"{score:.3f}" == top and job_id >= after_id:
                    continue  # shown before: equal creation times come in descending id order
                scanned += 1
                view = self.status(job_id)
                if view is None:
                    expired.append(job_id)
                    continue
                last = f"{score:.3f}-{job_id}"
                if not states or view["state"] in states:
                    views.append(view)
                if len(views) == limit or scanned == _SCAN_PER_PAGE:
                    break
            if expired:
                self.client.zrem(name, *expired)
                offset -= len(expired)
        return views, last if last is not None and self._after(name, last) else None

    def _after(self, name: str, position: str) -> bool:
        """Whether the owner index holds an entry after ``position`` (``<created>-<id>``) in the listing order."""
        created, _, job_id = position.partition("-")
        if self.client.zrevrangebyscore(name, f"({created}", "-inf", start=0, num=1):
            return True
        return any(member < job_id for member in self.client.zrangebyscore(name, created, created))

    # --- completion callbacks --------------------------------------------------------------------------
    def claim_callback(self, lease_s: float) -> str | None:
        """A job whose callback is due, leased for ``lease_s`` (a courier that dies with it leaves it due
        again after the lease); None when none is due. Atomic: two couriers never claim one job at once."""
        now = time.time()
        claimed = self.client.eval(
            "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1) "
            "if #due == 0 then return false end "
            "redis.call('ZADD', KEYS[1], ARGV[2], due[1]) return due[1]",
            1, CALLBACKS_KEY, f"{now:.3f}", f"{now + lease_s:.3f}")
        return claimed or None

    def drop_callback(self, job_id: str) -> None:
        """Take a job out of the outbox (deleted, or not finished after all)."""
        self.client.zrem(CALLBACKS_KEY, job_id)

    def record_callback(self, job_id: str, attempt: dict[str, Any], *, state: str,
                        next_at: float | None = None) -> None:
        """Record one delivery attempt; ``state`` pending (then due again at ``next_at``) or final."""
        if not self.exists(job_id):
            self.client.zrem(CALLBACKS_KEY, job_id)
            return
        attempts = json.loads(self.client.hget(self.key(job_id), "callback.attempts") or "[]")
        attempts = [*attempts, attempt][-MAX_RECORDED_ATTEMPTS:]
        fields: dict[str, Any] = {"callback.state": state, "callback.attempts": json.dumps(attempts),
                                  "callback.count": len(attempts)}
        fields["callback.next"] = f"{next_at:.3f}" if state == PENDING and next_at is not None else ""
        self._write(job_id, fields)
        if state == PENDING and next_at is not None:
            self.client.zadd(CALLBACKS_KEY, {job_id: next_at})
        else:
            self.client.zrem(CALLBACKS_KEY, job_id)

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The public view of a job (``GET /v1/jobs/<id>``), or None when unknown."""
        raw = self.raw(job_id)
        if not raw:
            return None
        request = JobRequest.from_hash(raw)
        names = list(request.modalities)
        modalities = {}
        for name in names:
            entry: dict[str, Any] = {
                "status": raw.get(f"{name}.status", QUEUED),
                "progress": float(raw.get(f"{name}.progress") or 0.0),
            }
            if raw.get(f"{name}.detail"):
                entry["detail"] = raw[f"{name}.detail"]
            if raw.get(f"{name}.seconds"):
                entry["seconds"] = float(raw[f"{name}.seconds"])
            if int(raw.get(f"{name}.attempts") or 0) > 1:
                entry["attempts"] = int(raw[f"{name}.attempts"])
            if raw.get(f"{name}.worker"):  # "<queue>@<hostname>": on several machines, which one ran it
                entry["worker"] = raw[f"{name}.worker"]
            modalities[name] = entry
        done = sum(1.0 if m["status"] in MODALITY_FINAL else m["progress"] for m in modalities.values())
        state = raw.get("state", QUEUED)
        progress = 1.0 if state in FINAL_STATES else (done / (len(names) + 1) if names else 0.0)
        view: dict[str, Any] = {
            "id": job_id,
            "state": state,
            "progress": round(progress, 3),
            "subject": request.subject or 0,
            "filename": raw.get("filename", ""),
            "created": float(raw.get("created") or 0.0),
            "updated": float(raw.get("updated") or 0.0),
            "modalities": modalities,
        }
        if raw.get("started"):
            view["started"] = float(raw["started"])
        if raw.get("finished"):
            view["finished"] = float(raw["finished"])
        if state == DONE:
            used = [m for m in raw.get("used", "").split(",") if m]
            view["used"] = used
            # some requested modality failed or saw nothing (a module fused with weight 0, e.g. one whose
            # validation CCC was not positive, is a choice of the fusion, not a degradation)
            view["degraded"] = any(modalities.get(m, {}).get("status") != "ok" for m in names)
        if raw.get("error"):
            view["error"] = raw["error"]
        if request.callback_url:
            callback: dict[str, Any] = {"url": request.callback_url, "state": raw.get("callback.state") or "waiting",
                                        "attempts": json.loads(raw.get("callback.attempts") or "[]")}
            if raw.get("callback.next"):
                callback["next_attempt"] = float(raw["callback.next"])
            view["callback"] = callback
        return view
