"""Entry point shared by every worker service: a Celery worker consuming exactly one queue.

``python -m services.<name>`` (the containers' command, and what ``empathy up`` starts) ends up here, so a
worker runs the same way under compose and as a local process; only the environment differs.
Concurrency defaults to 1 process per container: modalities scale by adding workers
(``docker compose up --scale landmarks=3``), which keeps one TensorFlow/dlib stack per process and makes
the memory of a replica predictable.
"""

from __future__ import annotations

import os
import sys

from services.celery_app import QUEUES
from shared.logs import configure_logging


def worker_argv(queue: str, extra: list[str] | None = None) -> list[str]:
    """Celery worker arguments for one queue (concurrency from EMPATHY_WORKER_CONCURRENCY, default 1)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; expected one of {', '.join(QUEUES)}")
    concurrency = os.environ.get("EMPATHY_WORKER_CONCURRENCY", "1")
    return ["worker", "--queues", queue, "--hostname", f"{queue}@%h", "--concurrency", concurrency,
            "--pool", "prefork", "--without-gossip", "--without-mingle", *(extra or [])]


def main(queue: str, argv: list[str] | None = None) -> int:
    """Run the worker of ``queue`` until it is stopped (SIGTERM: warm shutdown, running task finishes)."""
    configure_logging()
    from services.celery_app import app

    app.worker_main(worker_argv(queue, list(sys.argv[1:] if argv is None else argv)))
    return 0
