"""Entry point shared by every worker service: a Celery worker consuming exactly one queue.

``python -m services.<name>`` (the containers' command, and what ``empathy up`` starts) ends up here, so a
worker runs the same way under compose and as a local process; only the environment differs.

* **One process per worker**: Celery's ``threads`` pool runs tasks in threads of the worker process itself
  (``EMPATHY_WORKER_CONCURRENCY`` of them, default 1), instead of a forked pool child that carried a
  second resident copy of the libraries (dlib, OpenCV, NumPy, gRPC) next to the idle parent. Modalities
  scale by adding workers (``docker compose up --scale landmarks=3``, ``empathy up --workers``).
* **The model first**: a modality worker takes no task before its model server reports the model
  AVAILABLE (``GetModelStatus``), waiting up to ``EMPATHY_MODEL_LOAD_TIMEOUT_S``: after a restart the model
  server needs tens of seconds to load, and a worker that took the backlog meanwhile returned it degraded.
  Past the deadline it starts anyway and each task waits again (:meth:`shared.serving_client.GrpcPredictor._patiently`).
* **The watchdog** (:mod:`services.watchdog`) runs in every fusion worker.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from services.celery_app import FUSION_QUEUE, QUEUES
from shared.logs import configure_logging
from shared.settings import MODALITIES, get_settings

log = logging.getLogger(__name__)


def worker_argv(queue: str, extra: list[str] | None = None) -> list[str]:
    """Celery worker arguments for one queue (concurrency from EMPATHY_WORKER_CONCURRENCY, default 1)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; expected one of {', '.join(QUEUES)}")
    concurrency = os.environ.get("EMPATHY_WORKER_CONCURRENCY", "1")
    return ["worker", "--queues", queue, "--hostname", f"{queue}@%h", "--concurrency", concurrency,
            "--pool", "threads", "--without-gossip", "--without-mingle", *(extra or [])]


def wait_for_model(modality: str) -> bool:
    """Block until the modality's model server serves its model AVAILABLE, or the load deadline passes."""
    from shared.serving_client import GrpcPredictor, ServingError

    settings = get_settings()
    started = time.monotonic()
    with GrpcPredictor(settings.model_server_for(modality), modality, timeout_s=5.0) as predictor:
        try:
            version = predictor.wait_until_available(settings.model_load_timeout_s)
        except ServingError as exc:
            log.warning("model not available; taking tasks anyway (each waits for it again)",
                        extra={"modality": modality, "error": str(exc)})
            return False
    log.info("model available", extra={"modality": modality, "version": version,
                                        "waited_s": round(time.monotonic() - started, 1)})
    return True


def main(queue: str, argv: list[str] | None = None) -> int:
    """Run the worker of ``queue`` until it is stopped (SIGTERM: warm shutdown, running task finishes)."""
    configure_logging()
    from services.celery_app import app

    if queue in MODALITIES:
        wait_for_model(queue)
    if queue == FUSION_QUEUE:
        from services import watchdog

        watchdog.start(app)
    app.worker_main(worker_argv(queue, list(sys.argv[1:] if argv is None else argv)))
    return 0
