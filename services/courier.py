"""The courier: delivers completion callbacks, off every job's critical path (threads of the fusion workers).

When a job with a ``callback_url`` ends, :meth:`jobs.store.JobStore.finish` puts it in the outbox (the
sorted set ``empathy:callbacks``, scored by when its next attempt is due). Each fusion worker runs one
courier: a thread that claims due callbacks (atomically, with a lease, so two workers never deliver one at
once and a worker that dies mid-delivery leaves it due again) and hands each to a pool of
``EMPATHY_CALLBACK_THREADS`` delivery threads. Fusion tasks never wait for a receiver; a slow receiver holds
one delivery thread for at most ``EMPATHY_CALLBACK_TIMEOUT_S`` an attempt, never a job, and never the
callbacks of other jobs while other threads are free.

Each attempt (:func:`jobs.callbacks.deliver`: policy checked again, DNS resolved and checked, connection
pinned to the checked address, body signed with the owner's webhook secret) is recorded on the job
(``GET /v1/jobs/{id}`` shows ``callback``). A failed attempt is retried after 1 s, doubling up to 5 min,
until ``EMPATHY_CALLBACK_RETRY_S`` after the job finished; a URL the policy refuses is not retried.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from jobs.callbacks import Attempt, CallbackPolicy, CallbackRefused, deliver, webhook_secret
from jobs.request import JobRequest
from jobs.store import DELIVERED, FAILED, FINAL_STATES, PENDING, REFUSED, JobStore
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
POLL_S = 0.2  # how often an idle courier looks for due callbacks


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 1, 2, 4 ... up to 5 min."""
    return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(0, attempts - 1))


class Courier:
    """Claims due callbacks and delivers them on a pool of threads."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.policy = CallbackPolicy.from_settings(settings)
        self.threads = max(1, settings.callback_threads)
        self.slots = threading.Semaphore(self.threads)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="courier")
        self.stopped = threading.Event()
        self.lease_s = settings.callback_timeout_s * 3 + 30  # beyond one attempt's connect + send + answer

    def run(self) -> None:
        while not self.stopped.is_set():
            if not self.slots.acquire(timeout=POLL_S):
                continue
            try:
                job_id = self.store.claim_callback(self.lease_s)
            except Exception:  # noqa: BLE001 - Redis away: try again later
                log.warning("callback outbox unreachable", exc_info=True)
                job_id = None
            if job_id is None:
                self.slots.release()
                self.stopped.wait(POLL_S)
                continue
            self.pool.submit(self._deliver_and_release, job_id)

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _deliver_and_release(self, job_id: str) -> None:
        try:
            self.deliver(job_id)
        except Exception:  # noqa: BLE001 - the lease makes it due again
            log.exception("callback delivery crashed", extra={"job": job_id})
        finally:
            self.slots.release()

    def deliver(self, job_id: str) -> str | None:
        """One attempt at a claimed job's callback; the state recorded (None: the job is gone)."""
        raw = self.store.raw(job_id)
        view = self.store.status(job_id)
        if not raw or view is None or raw.get("state") not in FINAL_STATES:
            self.store.drop_callback(job_id)  # deleted meanwhile
            return None
        url = JobRequest.from_hash(raw).callback_url
        event = f"job.{view['state']}"
        document = {"event": event, "job": {k: v for k, v in view.items() if k != "callback"}}
        try:
            secret = webhook_secret(self.settings, raw.get("owner", ""))
            attempt = deliver(url, document, event=event, secret=secret, policy=self.policy,
                              timeout_s=self.settings.callback_timeout_s)
        except CallbackRefused as exc:
            log.warning("callback refused", extra={"job": job_id, "reason": str(exc)})
            self.store.record_callback(job_id, {"at": round(time.time(), 3), "status": 0, "seconds": 0.0,
                                                "error": f"refused: {exc}"[:300]}, state=REFUSED)
            return REFUSED
        except ConnectionError as exc:  # the host does not resolve: a failed attempt like any other
            attempt = Attempt(at=time.time(), status=0, seconds=0.0, error=str(exc)[:200])
        if attempt.delivered:
            self.store.record_callback(job_id, attempt.to_json(), state=DELIVERED)
            log.info("callback delivered", extra={"job": job_id, "status": attempt.status,
                                                  "seconds": round(attempt.seconds, 3)})
            return DELIVERED
        done = len(view.get("callback", {}).get("attempts", [])) + 1
        finished = float(raw.get("finished") or time.time())
        next_at = time.time() + backoff(done)
        if next_at > finished + self.settings.callback_retry_s:
            self.store.record_callback(job_id, attempt.to_json(), state=FAILED)
            log.warning("callback given up", extra={"job": job_id, "attempts": done, "error": attempt.error})
            return FAILED
        self.store.record_callback(job_id, attempt.to_json(), state=PENDING, next_at=next_at)
        log.info("callback attempt failed; will retry", extra={"job": job_id, "attempt": done,
                                                               "error": attempt.error, "retry_in_s": backoff(done)})
        return PENDING


def start(settings: Settings | None = None) -> Courier:
    """The courier of this process (a daemon thread), as :func:`services.watchdog.start` starts the watchdog."""
    settings = settings or get_settings()
    store = JobStore.from_url(settings.redis_url, ttl_s=settings.job_ttl_s, outage_s=settings.redis_outage_s)
    courier = Courier(store, settings)
    threading.Thread(target=courier.run, name="courier", daemon=True).start()
    log.info("courier started", extra={"threads": courier.threads})
    return courier
