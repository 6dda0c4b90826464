"""The worker entry point: ``python -m services.worker <queue> [celery worker options]``.

One Celery worker consuming exactly one queue: a modality of the registry (:mod:`shared.registry`),
``fusion`` or ``vision``. It is the containers' command (the Dockerfile's worker targets; compose passes the
queue) and what ``empathy up`` starts, so a worker runs the same way under compose and as a local process;
only the environment differs. Options after the queue go to Celery (``--hostname fusion-2@%h``).

* **One process per worker**: Celery's ``threads`` pool runs tasks in threads of the worker process itself
  (``EMPATHY_WORKER_CONCURRENCY`` of them, default 1), instead of a forked pool child that carried a
  second resident copy of the libraries (dlib, OpenCV, NumPy, gRPC) next to the idle parent. Modalities
  scale by adding workers (``docker compose up --scale landmarks=3``, ``empathy up --workers``).
* **The model first**: a modality worker takes no task before its model server reports the model
  AVAILABLE (``GetModelStatus``), waiting up to ``EMPATHY_MODEL_LOAD_TIMEOUT_S``: after a restart the model
  server needs tens of seconds to load, and a worker that took the backlog meanwhile returned it degraded.
  Past the deadline it starts anyway and each task waits again (:meth:`serving.client.GrpcPredictor._patiently`).
* **The watchdog** (:mod:`services.watchdog`) and **the courier** of completion callbacks
  (:mod:`services.courier`) run in every fusion worker.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from services.celery_app import FUSION_QUEUE, QUEUES
from shared.logs import configure_logging
from shared.registry import entry
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
    from serving.client import GrpcPredictor, ServingError

    settings = get_settings()
    started = time.monotonic()
    with GrpcPredictor(settings.model_server_for(modality), entry(modality).servable, timeout_s=5.0) as predictor:
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
    """Run the worker of ``queue`` until it is stopped (SIGTERM: warm shutdown, running task finishes).

    ``argv``: extra Celery worker options.
    """
    if queue not in QUEUES:  # before anything connects: a typo in a compose command fails at once
        raise ValueError(f"unknown queue {queue!r}; expected one of {', '.join(QUEUES)}")
    configure_logging()
    from services.celery_app import app
    from serving.model_mirror import start_from_settings

    # EMPATHY_MODELS_URL=s3://...: mirrored now, then polled; a modality worker needs its own model only (the vision
    # worker several, fusion every model's metadata)
    mirror = start_from_settings(get_settings(), only=queue if queue in MODALITIES else None)
    if queue in MODALITIES and wait_for_model(queue) and mirror is not None:
        mirror.refresh()  # the served version may have been pushed after the first mirror: its metadata, now
    if queue == FUSION_QUEUE:
        from services import courier, watchdog

        watchdog.start(app)
        courier.start()
    app.worker_main(worker_argv(queue, list(argv or [])))
    return 0


def cli(argv: list[str]) -> int:
    """``python -m services.worker <queue> [options]``: usage and exit status 2 without a known queue."""
    if not argv or argv[0] not in QUEUES:
        print(f"usage: python -m services.worker <queue> [celery worker options]\n"
              f"queues: {' '.join(QUEUES)}", file=sys.stderr)
        return 2
    return main(argv[0], argv[1:])


if __name__ == "__main__":
    raise SystemExit(cli(sys.argv[1:]))
