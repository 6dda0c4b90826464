"""The Celery application factory: broker, result backend, queues and routing of the whole ensemble.

One queue per modality of the registry (:mod:`shared.registry`: ``audio``, ``text``, ``face``, ``landmarks``,
``body``, and any plugin's), plus ``fusion`` (and the optional ``vision``), so that each modality scales on its own (``docker compose up --scale landmarks=3`` or ``empathy up --workers
landmarks=3``). The gateway imports this module only (never :mod:`services.tasks`, which pulls in the
preprocessing stack), builds its own app with :func:`create_app` and sends tasks by name.

Reliability choices (Celery's "Optimizing" guide): JSON only (no pickle from the network: a worker refuses
any other content type), tasks are acknowledged after they ran (``task_acks_late``) and re-queued when the
pool process running them dies (``task_reject_on_worker_lost``), and a worker reserves one task at a time
(``worker_prefetch_multiplier = 1``) because tasks are long: a prefetched task would wait behind a video
while another worker idles. When a whole worker dies (container killed, machine lost) its unacknowledged
task stays in Redis and another worker re-delivers it once it is older than the visibility timeout
(``EMPATHY_TASK_VISIBILITY_TIMEOUT_S``; workers sweep every ``EMPATHY_TASK_RESTORE_INTERVAL_S``). A chord
counts each header task once (Celery keys its part returns by task id), so a re-delivered task never
fires the fusion early. Outages are waited out by the workers (broker reconnection without limit,
result-backend writes retried for ``EMPATHY_REDIS_OUTAGE_S``); what still slips through (a worker killed
mid-task, a chord that never fired) is caught by the job watchdog (:mod:`services.watchdog`).
Results go through Redis **by reference**: series live in the job storage (:mod:`jobs.storage`), Redis
carries blob names and statuses only.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend
from kombu import Queue
from kombu.utils.uuid import uuid

from shared.registry import FUSION_QUEUE, VISION_QUEUE, entry, worker_queues
from shared.settings import MODALITIES, Settings, get_settings

ANALYZE_TASK = "empathy.analyze_modality"
FUSE_TASK = "empathy.fuse"
# Optional deployment (EMPATHY_VISION_WORKER=on): the vision modalities of a job (face, landmarks, body) as one
# task on the "vision" queue, whose worker (python -m services.worker vision) decodes the video once for all.
VISION_TASK = "empathy.analyze_vision"
QUEUES: tuple[str, ...] = worker_queues()


def route_task(name: str, args: tuple, kwargs: dict[str, Any], options: dict[str, Any], task: Any = None,
               **_: Any) -> dict[str, str] | None:
    """Router (Celery's ``task_routes`` function form): a modality's analysis goes to its own queue."""
    if name == ANALYZE_TASK:
        modality = kwargs.get("modality") if kwargs else None
        if modality is None and len(args) > 1:
            modality = args[1]
        if modality not in MODALITIES:
            raise ValueError(f"{ANALYZE_TASK} needs a modality among {MODALITIES}, got {modality!r}")
        return {"queue": entry(modality).queue}
    if name == FUSE_TASK:
        return {"queue": FUSION_QUEUE}
    if name == VISION_TASK:
        return {"queue": VISION_QUEUE}
    return None


class DispatchOnlyRedisBackend(RedisBackend):
    """Redis result backend for a process that sends tasks but never waits on their results (the gateway).

    The stock backend subscribes to every sent task's result channel so that ``AsyncResult.get()`` can
    wait without polling; a sender that never calls ``get()`` never drains those subscriptions (celery
    issue #6963: growing memory, and reconnect storms in ``AsyncResult.__del__`` when Redis goes away).
    Clients follow jobs through the job store instead, so the subscription is skipped. Storing and
    reading results (what chords need, in the workers) is unchanged.
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        return result  # a chord's GroupResult registers its members here: no subscription either


def create_app(settings: Settings | None = None, *, dispatch_only: bool = False) -> Celery:
    """A configured Celery app; tasks are registered by importing :mod:`services.tasks` (workers only).

    ``dispatch_only``: for senders that never wait on results (see :class:`DispatchOnlyRedisBackend`).
    """
    settings = settings or get_settings()
    backend = settings.redis_url
    if dispatch_only:
        backend = f"{__name__}:{DispatchOnlyRedisBackend.__name__}+{settings.redis_url}"
    app = Celery("empathy", broker=settings.redis_url, backend=backend)
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.task_visibility_timeout_s,
        "unacked_restore_interval": settings.task_restore_interval_s,
        "unacked_restore_throttle": 1,  # sweep on every interval (kombu's default scans every 10th)
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=FUSION_QUEUE,
        task_routes=(route_task,),
        task_track_started=True,
        result_expires=settings.job_ttl_s,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for Redis however long it is away
        worker_cancel_long_running_tasks_on_connection_loss=False,  # a running analysis outlives a Redis restart
        # Storing a task's return and counting a chord's parts survive a Redis outage of up to
        # EMPATHY_REDIS_OUTAGE_S (retries with jittered exponential back-off up to 5 s each).
        result_backend_always_retry=True,
        result_backend_max_retries=int(settings.redis_outage_s / 2.5) + 10,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=5000,
        # A video can take minutes: Redis must not re-deliver a running task to a second worker.
        broker_transport_options=transport_options,
        result_backend_transport_options={"visibility_timeout": settings.task_visibility_timeout_s},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        imports=("services.tasks",),
    )
    if dispatch_only:
        # The gateway answers requests: a Redis outage must fail a submission within seconds (503), not
        # hang it on Celery's defaults (120 s socket timeout, unbounded connect).
        timeout = settings.redis_timeout_s * 0.45  # two attempts at most: the whole within EMPATHY_REDIS_TIMEOUT_S
        app.conf.update(
            broker_connection_timeout=timeout,
            broker_transport_options={**transport_options, "socket_timeout": timeout,
                                      "socket_connect_timeout": timeout},
            redis_socket_timeout=timeout,
            redis_socket_connect_timeout=timeout,
            result_backend_always_retry=False,
            task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1,
                                       "interval_max": 0.1},
        )
    return app


def __getattr__(name: str) -> Celery:
    """``app``: the workers' Celery app, built on first use (``services.tasks`` registers its tasks on it;
    ``celery -A services.celery_app`` finds it), never as a side effect of importing this module: the gateway
    imports it for :func:`create_app` and :func:`dispatch_job` only."""
    if name == "app":
        globals()["app"] = built = create_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dispatch_job(celery_app: Celery, job_id: str, modalities: list[str]) -> list[str]:
    """Send a job as a chord: one analysis per modality (each on its queue), then fusion on ``fusion``.

    Tasks are sent by name so the sender (the gateway) never imports the workers' code. Task ids are
    chosen here and returned so that ``DELETE /v1/jobs/<id>`` can revoke what has not run yet.
    """
    from celery import chord

    together = vision_together(modalities)
    header = [celery_app.signature(ANALYZE_TASK, kwargs={"job_id": job_id, "modality": name}).set(task_id=uuid())
              for name in modalities if name not in together]
    if together:
        header.append(celery_app.signature(VISION_TASK, kwargs={"job_id": job_id, "modalities": together})
                      .set(task_id=uuid()))
    body = celery_app.signature(FUSE_TASK, kwargs={"job_id": job_id}).set(task_id=uuid())
    chord(header, body).apply_async()
    return [sig.id for sig in header] + [body.id]


def vision_together(modalities: list[str], settings: Settings | None = None) -> list[str]:
    """The vision modalities a job sends as one decode-once task: none unless EMPATHY_VISION_WORKER is on
    (``empathy up`` turns 'auto' on for its children) and the job asks for at least two of face, landmarks
    and body."""
    if not (settings or get_settings()).vision_worker_on():
        return []
    together = [name for name in modalities if entry(name).vision]
    return together if len(together) > 1 else []
