"""The gateway's Flask application factory (served by gunicorn: ``gateway.app:create_app()``).

Everything the request handlers need (settings, Redis, the job store, the Celery app used to send
chords, the API keys, the metrics) is built here once per app and hung on ``app.config`` /
``app.extensions``, so tests can build an app against their own Redis and several apps never share state.

Failure modes are answered, never hung on: Redis calls have short timeouts (``EMPATHY_REDIS_TIMEOUT_S``)
and a Redis or broker outage becomes a 503 with the reason; an authentication set-up without any key
stops the app at start-up (:class:`gateway.auth.AuthConfigError`).
"""

from __future__ import annotations

import logging
import time

import redis
from flask import Flask, Response, g, jsonify, request
from kombu.exceptions import OperationalError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from werkzeug.exceptions import ClientDisconnected, HTTPException

from gateway import health, jobs_api, web, webhooks
from gateway.auth import Authenticator, FailureLimiter
from gateway.jobs_api import ApiError
from gateway.metrics import GatewayMetrics, RefusalLog
from gateway.openapi import spec as openapi_spec
from gateway.server import ReadDeadlineError, begin_body
from gateway.uploads import FormLimitError, UploadRequest, form_limits
from jobs.callbacks import CallbackPolicy
from jobs.storage import open_storage
from jobs.store import JobStore
from services.celery_app import create_app as create_celery
from shared.logs import configure_logging
from shared.media import parse_frame_size
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = Flask(__name__, static_folder=None)  # no static folder: the web page's three files (gateway.web) only
    app.request_class = UploadRequest  # uploads stream to temporary files, handed to the job storage or removed
    app.json.sort_keys = False  # modalities keep the canonical order (audio, text, face, landmarks, body)
    app.config["EMPATHY_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.extensions["empathy_auth"] = Authenticator(settings)
    app.extensions["empathy_failures"] = FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_s)
    # One quick retry (a pooled connection that died with a Redis restart is replaced), then the error:
    # redis-py's default (3 retries, up to 10 s apart) would keep a request waiting through an outage.
    # Each attempt gets half of EMPATHY_REDIS_TIMEOUT_S, so an unreachable Redis (no answer at all, not
    # just a refused connection) is a 503 within EMPATHY_REDIS_TIMEOUT_S, not twice that.
    attempt_s = settings.redis_timeout_s * 0.45
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=attempt_s,
                                  socket_connect_timeout=attempt_s,
                                  retry=Retry(ExponentialBackoff(cap=0.1, base=0.05), 1))
    app.extensions["empathy_redis"] = client
    app.extensions["empathy_jobs"] = JobStore(client, ttl_s=settings.job_ttl_s)
    app.extensions["empathy_storage"] = open_storage(settings)
    app.extensions["empathy_celery"] = create_celery(settings, dispatch_only=True)
    app.extensions["empathy_callbacks"] = CallbackPolicy.from_settings(settings)
    metrics = GatewayMetrics(client)
    metrics.set_limits(limits(settings))
    app.extensions["empathy_metrics"] = metrics
    refusal_log = RefusalLog()
    app.register_blueprint(jobs_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(web.bp)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_spec())

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int, dict[str, str]]:
        g.refusal = exc.reason
        return jsonify({"error": exc.message, **exc.extra}), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int, dict[str, str]]:
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, ClientDisconnected) and isinstance(cause, ReadDeadlineError):
            return too_slow(cause)  # werkzeug reports the cut-off body as a disconnect
        status = exc.code or 500
        message = exc.description or exc.name
        # werkzeug's own headers (405: Allow) without its HTML content type
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        g.refusal = type(exc).__name__
        if isinstance(exc, FormLimitError):
            g.refusal = exc.reason
        elif status == 413:
            message = f"upload larger than {settings.max_upload_mb} MiB (EMPATHY_MAX_UPLOAD_MB)"
            g.refusal = "upload_too_large"
        if status == 413:
            headers["Connection"] = "close"  # the rest of the body is not read
        return jsonify({"error": message}), status, headers

    @app.errorhandler(ReadDeadlineError)
    def too_slow(exc: ReadDeadlineError) -> tuple[Response, int, dict[str, str]]:
        g.refusal = "client_too_slow"
        return jsonify({"error": f"request timeout: {exc} (EMPATHY_UPLOAD_MIN_RATE_KIB_S, "
                                 "EMPATHY_UPLOAD_IDLE_TIMEOUT_S)"}), 408, {"Connection": "close"}

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error", extra={"path": request.path})
        return jsonify({"error": f"internal error ({type(exc).__name__}); see the gateway's log"}), 500

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(OperationalError)
    def redis_error(exc: Exception) -> tuple[Response, int, dict[str, str]]:
        log.error("redis unavailable", extra={"error": str(exc), "path": request.path})
        return jsonify({"error": f"job store unavailable, retry later: {exc}"}), 503, {"Retry-After": "5"}

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()
        begin_body(request.environ)  # under gunicorn (gateway.server): the body must keep a minimum rate

    @app.after_request
    def record(response: Response) -> Response:
        if response.status_code >= 400 and (request.content_length or request.headers.get("Transfer-Encoding")):
            response.headers["Connection"] = "close"  # its body may be unread: close instead of reading it
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(request.method, endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        if 400 <= response.status_code < 500:  # counted, and logged as a sample (never one line each)
            reason = g.get("refusal") or str(response.status_code)
            metrics.refusals.labels(reason, str(response.status_code)).inc()
            refusal_log.refused(reason, response.status_code, path=request.path[:200], method=request.method,
                                remote=request.remote_addr)
        return response

    return app


def limits(settings: Settings) -> dict[str, float]:
    """The limits in force, as exported in ``/metrics`` (``empathy_gateway_limit{limit=...}``)."""
    return {
        "max_upload_mb": settings.max_upload_mb,
        "max_duration_s": settings.max_duration_s,
        "max_frame_pixels": int.__mul__(*parse_frame_size(settings.max_frame_size)),
        "max_pixel_rate": settings.max_pixel_rate,
        "connections": settings.gateway_connections,
        "request_header_timeout_s": settings.request_header_timeout_s,
        "upload_idle_timeout_s": settings.upload_idle_timeout_s,
        "upload_min_rate_kib_s": settings.upload_min_rate_kib_s,
        "auth_failures_per_window": settings.auth_failure_limit,
        "auth_failure_window_s": settings.auth_failure_window_s,
        "key_jobs_per_minute": settings.key_jobs_per_minute,
        "key_active_jobs": settings.key_active_jobs,
        **form_limits(),
    }
