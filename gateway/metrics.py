"""Prometheus metrics of the gateway: HTTP traffic, submitted jobs, refusals, limits, and the depth of every
Celery queue.

Refused requests are counted by reason (``empathy_refused_requests_total{reason,status}``) and *sampled* in
the log (:class:`RefusalLog`): one WARNING per reason per ``interval_s`` saying how many were refused since,
so a client hammering the API with bad requests cannot flood the log (fuzzing wrote 16 831 WARNING lines,
one per refusal). The limits in force are exported as ``empathy_gateway_limit{limit}``.

Queue depths are read from Redis at scrape time (a custom collector), so they are right whichever
process scrapes them and need no shared state between gunicorn workers. Each app gets its own registry,
so several apps in one process (tests) never clash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.celery_app import QUEUES

log = logging.getLogger(__name__)


class QueueDepthCollector(Collector):
    """``empathy_queue_length{queue}``: tasks waiting in each Celery queue (Redis list length)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("empathy_queue_length", "Tasks waiting in a Celery queue", labels=["queue"])
        try:
            pipe = self.client.pipeline()
            for queue in QUEUES:
                pipe.llen(queue)
            for queue, depth in zip(QUEUES, pipe.execute(), strict=True):
                family.add_metric([queue], float(depth))
        except redis.RedisError as exc:
            log.warning("queue depth unavailable", extra={"error": str(exc)})
        yield family


class GatewayMetrics:
    def __init__(self, client: redis.Redis) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("empathy_http_requests", "HTTP requests handled by the gateway",
                                ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("empathy_http_request_seconds", "Gateway request latency",
                                 ["endpoint"], registry=self.registry)
        self.jobs = Counter("empathy_jobs_submitted", "Jobs accepted by the gateway", registry=self.registry)
        self.upload_bytes = Counter("empathy_upload_bytes", "Bytes of accepted video uploads", registry=self.registry)
        self.refusals = Counter("empathy_refused_requests", "Requests the gateway refused (4xx), by reason",
                                ["reason", "status"], registry=self.registry)
        self.limits = Gauge("empathy_gateway_limit", "A limit the gateway enforces (its setting's value)", ["limit"],
                            registry=self.registry)
        self.registry.register(QueueDepthCollector(client))

    def set_limits(self, limits: dict[str, float]) -> None:
        for name, value in limits.items():
            self.limits.labels(name).set(value)


class RefusalLog:
    """At most one WARNING per refusal reason every ``interval_s``, with how many were refused since."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}
        self._lock = threading.Lock()

    def refused(self, reason: str, status: int, **extra: Any) -> bool:
        """Note one refusal; True when it was logged (the first of its reason in the interval)."""
        now = time.monotonic()
        with self._lock:
            self._since[reason] = self._since.get(reason, 0) + 1
            if now - self._last.get(reason, -self.interval_s) < self.interval_s:
                return False
            count, self._since[reason], self._last[reason] = self._since[reason], 0, now
        log.warning("refused: %s", reason, extra={"reason": reason, "status": status, "refused_since_last": count,
                                                  "interval_s": self.interval_s, **extra})
        return True
