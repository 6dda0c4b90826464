"""Prometheus metrics of the gateway: HTTP traffic, submitted jobs, and the depth of every Celery queue.

Queue depths are read from Redis at scrape time (a custom collector), so they are right whichever
process scrapes them and need no shared state between gunicorn workers. Each app gets its own registry,
so several apps in one process (tests) never clash.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
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
        self.registry.register(QueueDepthCollector(client))
