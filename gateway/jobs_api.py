"""``/v1/jobs``: upload a video, follow its analysis, fetch the result (JSON, CSV or a plot), delete it.

The gateway never analyses anything itself: it validates the request (:class:`jobs.request.JobRequest`)
and the upload, stores the upload in the job storage (:mod:`jobs.files`), records the job in Redis and sends
the Celery chord. Everything it returns comes from the job store
(state) or from the result document the fusion worker wrote (result, CSV, plot).

Every route needs the caller's API key (:mod:`gateway.auth`) and sees only the caller's jobs: a job of
another key answers 404 exactly like a job that does not exist, so ids cannot be probed. Uploads are
checked before anything is kept (:mod:`gateway.uploads`): size while streaming (413), then PyAV's probe
(415 for anything that is not a decodable video), then the duration limit (413). A rejected upload leaves
nothing behind.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import redis
from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from kombu.exceptions import OperationalError
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from gateway.auth import Authenticator, Caller, FailureLimiter, presented_key
from gateway.server import offload
from gateway.uploads import MAX_TRANSCRIPT_BYTES, sanitize_filename, stored_suffix, upload_path
from jobs.callbacks import CallbackPolicy, CallbackRefused, webhook_secret
from jobs.files import JobFiles
from jobs.request import JobRequest, field_specs
from jobs.storage import JobStorage
from jobs.store import (
    CURSOR_RE,
    DONE,
    MAX_PAGE,
    STATES,
    IdempotencyConflict,
    JobStore,
    new_job_id,
    valid_job_id,
)
from services.celery_app import dispatch_job
from shared.asr import ASRError, read_word_file
from shared.data import TranscriptError
from shared.media import MediaError, MediaLimitError, VideoInfo, check_limits, check_video_input, probe
from shared.plot import render_png
from shared.results import to_csv
from shared.settings import Settings

log = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII without spaces, as in the IETF draft
FILE_FIELDS = frozenset({"video", "transcript"})


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status (and optional headers); ``reason``
    names it in ``empathy_refused_requests_total`` (default: its ``kind``, else the status)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 reason: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.reason = reason or extra.get("kind") or str(status)
        self.extra = extra


def _settings() -> Settings:
    return current_app.config["EMPATHY_SETTINGS"]


def _store() -> JobStore:
    return current_app.extensions["empathy_jobs"]


def _files(job_id: str) -> JobFiles:
    storage: JobStorage = current_app.extensions["empathy_storage"]
    return JobFiles(storage, job_id)


def _caller() -> Caller:
    return g.caller


def _limiter() -> FailureLimiter:
    return current_app.extensions["empathy_failures"]


def _address_subject() -> str:
    return f"addr:{request.remote_addr}"


def _key_subject(caller: Caller) -> str:
    return f"key:{caller.owner[:32]}"


def _too_many(retry_after: float, message: str, reason: str) -> ApiError:
    return ApiError(429, message, reason=reason,
                    headers={"Retry-After": str(max(1, int(retry_after + 0.999))), "Connection": "close"})


@bp.before_request
def authenticate() -> None:
    """Every ``/v1/jobs`` request names its key before anything is read (an upload included).

    Refusals (401, and 404 for unknown jobs) are counted per client address and per presented key
    (:class:`FailureLimiter`). A request with a valid key is limited only by its own key's refusals, never
    by its address's: one stranger behind the same NAT or proxy cannot lock honest keys out. A request
    without a valid key is limited by both, so random keys from one address get nowhere.
    """
    authenticator: Authenticator = current_app.extensions["empathy_auth"]
    caller = authenticator.identify(request.headers.get("Authorization"))
    if caller is not None:
        subjects: tuple[str, ...] = (_key_subject(caller),)
    else:
        key = presented_key(request.headers.get("Authorization"))
        subjects = (_address_subject(), *([key] if key else []))
    retry_after = _limiter().retry_after(*subjects)
    if retry_after is not None:
        raise _too_many(retry_after, "too many refused requests (unknown key or job) from this client; retry "
                                     "later (EMPATHY_AUTH_FAILURE_LIMIT)", "too_many_failures")
    if caller is None:
        _limiter().record(*subjects)
        raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <token>' "
                            "(empathy submit --api-key / EMPATHY_API_KEY)", reason="no_valid_key",
                       headers={"WWW-Authenticate": 'Bearer realm="empathy"', "Connection": "close"})
    g.caller = caller


def _check_key_limits(settings: Settings, caller: Caller) -> None:
    """Per-key limits on accepted work, before the upload is read: jobs per minute, jobs unfinished at once."""
    store = _store()
    if settings.key_active_jobs > 0 and store.unfinished_jobs(caller.owner) >= settings.key_active_jobs:
        raise _too_many(30, f"this key has {settings.key_active_jobs} jobs queued or running, its limit "
                            "(EMPATHY_KEY_ACTIVE_JOBS); retry when one has finished", "key_active_jobs")
    if settings.key_jobs_per_minute > 0:
        now = time.time()
        recent = store.accepted_since(caller.owner, now - 60.0)
        if len(recent) >= settings.key_jobs_per_minute:
            oldest = recent[len(recent) - settings.key_jobs_per_minute]
            raise _too_many(oldest + 60.0 - now, f"this key submitted {len(recent)} jobs in the last minute, its "
                                                 "limit (EMPATHY_KEY_JOBS_PER_MINUTE); retry later", "key_rate")


def _job_or_404(job_id: str) -> dict[str, Any]:
    """The caller's job; another key's job is reported exactly like an unknown one."""
    store = _store()
    status = None
    if valid_job_id(job_id) and Authenticator.owns(_caller(), store.owner(job_id)):
        status = store.status(job_id)
    if status is None:
        _limiter().record(_key_subject(_caller()))  # a valid key: its own count, not its address's
        raise ApiError(404, f"no job {job_id[:64]!r} (unknown, deleted or expired)", reason="unknown_job")
    return status


def _links(job_id: str) -> dict[str, str]:
    return {"self": url_for("jobs.get_job", job_id=job_id), "result": url_for("jobs.get_result", job_id=job_id),
            "plot": url_for("jobs.get_plot", job_id=job_id)}


# --- request fields --------------------------------------------------------------------------------------
def _job_request() -> JobRequest:
    """The job's request from the form (:meth:`JobRequest.from_form`, the one parser): 400 when malformed.

    Unknown or repeated fields are mistakes (``subjet=3`` must not silently become subject 0); the upload
    parts (video, transcript) must be files.
    """
    misplaced = sorted(FILE_FIELDS & set(request.form))
    if misplaced:
        raise ApiError(400, f"form fields {misplaced} must be file uploads (multipart parts with a filename)")
    unknown_files = sorted(set(request.files) - FILE_FIELDS)
    if unknown_files:
        raise ApiError(400, f"unknown form fields {[n[:40] for n in unknown_files[:10]]}; expected "
                            f"{sorted({*field_specs(), *FILE_FIELDS})}")
    for name in FILE_FIELDS:
        if len(request.files.getlist(name)) > 1:
            raise ApiError(400, f"form field {name!r} given more than once")
    try:
        return JobRequest.from_form({name: request.form.getlist(name) for name in request.form})
    except ValueError as exc:
        raise ApiError(400, str(exc), reason="bad_field") from None


def _check_callback(job: JobRequest, settings: Settings) -> None:
    """400 unless the service may call the job's callback URL (:mod:`jobs.callbacks`), checked now for an
    early answer and again before every delivery. A host that does not resolve yet is accepted."""
    if not job.callback_url:
        return
    policy: CallbackPolicy = current_app.extensions["empathy_callbacks"]
    try:
        policy.check_url(job.callback_url)
        webhook_secret(settings, _caller().owner)
        policy.resolve(job.callback_url)
    except CallbackRefused as exc:
        raise ApiError(400, f"callback_url: {exc}", reason="callback_refused") from None
    except ConnectionError:
        log.info("callback host does not resolve yet", extra={"client": _caller().name})


def _idempotency_key() -> str | None:
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not _IDEMPOTENCY_RE.match(raw):
        raise ApiError(400, f"{IDEMPOTENCY_HEADER} must be 1 to 200 printable ASCII characters without spaces")
    return raw


# --- upload checks -----------------------------------------------------------------------------------------
def _uploaded_video(upload: FileStorage | None) -> tuple[Path, str]:
    """The streamed temporary file of the ``video`` part and the client's name for it (a label only)."""
    if upload is None:
        raise ApiError(400, "multipart form field 'video' (the video file) is required")
    path = upload_path(upload.stream)
    if path is None:  # UploadRequest streams every file part to the volume: this is a wiring error
        raise ApiError(500, "the upload was not streamed to a temporary file")
    upload.stream.flush()
    if path.stat().st_size == 0:
        raise ApiError(400, "the uploaded video is empty (0 bytes)")
    return path, sanitize_filename(upload.filename)


def _check_video(path: Path, label: str, settings: Settings) -> VideoInfo:
    """The upload's container and stream headers, never a decoded frame (:func:`shared.media.probe`): 415 for
    a still image, anything that is not a video or whose headers do not give the frame size; 413 when its
    frames or pixel rate exceed the limits; then 415 unless it lasts long enough, 413 when too long."""
    try:
        info = probe(path)
        check_limits(info, max_frame_size=settings.max_frame_size, max_pixel_rate=settings.max_pixel_rate)
    except MediaLimitError as exc:
        raise ApiError(413, str(exc).replace(path.name, label), kind="MediaLimitError") from None
    except MediaError as exc:
        reason = str(exc).replace(str(path), label).replace(path.name, label)  # the client's name, not ours
        raise ApiError(415, f"not a usable video: {reason}", kind=type(exc).__name__) from None
    try:
        check_video_input(info, min_duration_s=settings.min_duration_s, label=label)  # what `analyze` checks too
    except MediaError as exc:
        raise ApiError(415, f"not a usable video: {exc}", kind=type(exc).__name__) from None
    if info.duration_s > settings.max_duration_s:
        raise ApiError(413, f"the video lasts {info.duration_s:.0f} s, longer than the limit of "
                            f"{settings.max_duration_s:.0f} s (EMPATHY_MAX_DURATION_S)")
    return info


def _check_video_fields(job: JobRequest, info: VideoInfo) -> None:
    """The fields that only make sense with the video (:meth:`JobRequest.check_video`): 400 now, not a
    failed job later."""
    try:
        job.check_video(info)
    except ValueError as exc:
        raise ApiError(400, str(exc), reason="bad_field") from None


def _check_transcript(upload: FileStorage) -> Path:
    """The streamed temporary file of the ``transcript`` part, once it reads as word timings (else 400)."""
    path = upload_path(upload.stream)
    if path is None:  # UploadRequest streams every file part to a temporary file: this is a wiring error
        raise ApiError(500, "the transcript was not streamed to a temporary file")
    upload.stream.flush()
    if path.stat().st_size > MAX_TRANSCRIPT_BYTES:  # parsed in memory: bounded first
        raise ApiError(413, f"the transcript is larger than {MAX_TRANSCRIPT_BYTES >> 20} MiB",
                       reason="transcript_too_large")
    try:
        read_word_file(path)
    except (TranscriptError, ASRError, ValueError) as exc:
        raise ApiError(400, f"bad transcript: {str(exc).replace(str(path), 'transcript')}") from None
    return path


def _fingerprint(job: JobRequest, video: Path, transcript: Path | None) -> str:
    """What makes two submissions "the same upload" (:meth:`JobRequest.fingerprint`)."""
    with video.open("rb") as fh:
        if transcript is None:
            return job.fingerprint(fh)
        with transcript.open("rb") as words:
            return job.fingerprint(fh, words)


def _replay(job_id: str) -> tuple[Response, int, dict[str, str]]:
    """The job an idempotency key already made (200, not 202: nothing new was accepted)."""
    status = _store().status(job_id)
    if status is None:
        raise ApiError(409, "a request with this idempotency key is still being processed; retry shortly")
    headers = {"Location": url_for("jobs.get_job", job_id=job_id), "Idempotent-Replayed": "true"}
    return jsonify({**status, "links": _links(job_id)}), 200, headers


@bp.post("")
def create_job() -> tuple[Response, int, dict[str, str]]:
    settings = _settings()
    caller = _caller()
    idempotency = _idempotency_key()
    _check_key_limits(settings, caller)
    job = _job_request().resolve(settings)  # reads the body: 413 here when larger than EMPATHY_MAX_UPLOAD_MB
    _check_callback(job, settings)
    video_part = request.files.get("video")
    upload, filename = _uploaded_video(video_part)
    info = offload(_check_video, upload, filename, settings)  # a native thread: the event loop goes on
    _check_video_fields(job, info)
    transcript_part = request.files.get("transcript")
    transcript = offload(_check_transcript, transcript_part) \
        if transcript_part is not None and transcript_part.filename else None
    job_id = new_job_id()
    if idempotency is not None:
        try:
            fingerprint = offload(_fingerprint, job, upload, transcript)
            existing = _store().claim_idempotency_key(caller.owner, idempotency, job_id, fingerprint)
        except IdempotencyConflict as exc:
            raise ApiError(422, f"{IDEMPOTENCY_HEADER} reused: {exc}") from None
        if existing is not None:
            log.info("idempotent replay", extra={"job": existing, "client": caller.name})
            return _replay(existing)
    try:
        return _accept(job_id, job, upload, filename, info, transcript)
    except Exception:
        _files(job_id).delete()
        if idempotency is not None:
            _release_quietly(caller.owner, idempotency)
        raise


def _release_quietly(owner: str, key: str) -> None:
    try:
        _store().release_idempotency_key(owner, key)
    except redis.RedisError:
        log.warning("could not release an idempotency key; it expires with the job TTL")


def _accept(job_id: str, job: JobRequest, upload: Path, filename: str, info: VideoInfo,
            transcript: Path | None) -> tuple[Response, int, dict[str, str]]:
    """Keep the upload (and transcript) in the job storage under generated names, record the job, send its chord."""
    files = _files(job_id)
    size = upload.stat().st_size
    video = files.put_video(upload, stored_suffix(filename), move=True)  # local storage: a rename, no copy
    if transcript is not None:
        files.put_transcript(transcript, move=True)
    store = _store()
    store.create(job_id, job, filename=filename, video=video, owner=_caller().owner)
    try:
        task_ids = dispatch_job(current_app.extensions["empathy_celery"], job_id, list(job.modalities))
    except (OperationalError, redis.RedisError) as exc:
        store.delete(job_id)
        raise ApiError(503, f"the job queue is unavailable, nothing was kept; retry later ({exc})") from None
    store.set_task_ids(job_id, task_ids)
    store.record_accepted(_caller().owner, job_id)
    metrics = current_app.extensions["empathy_metrics"]
    metrics.jobs.inc()
    metrics.upload_bytes.inc(size)
    log.info("job accepted", extra={"job": job_id, "client": _caller().name, "subject": job.subject,
                                    "modalities": list(job.modalities), "upload": filename, "frames": info.n_frames,
                                    "duration_s": info.duration_s})
    body = {**(store.status(job_id) or {}), "links": _links(job_id), "n_frames": info.n_frames,
            "duration_s": info.duration_s}
    return jsonify(body), 202, {"Location": url_for("jobs.get_job", job_id=job_id)}


@bp.get("")
def list_jobs() -> Response:
    """The caller's jobs, newest first, a page at a time (``limit``, ``cursor``), optionally by ``state``."""
    raw_limit = request.args.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE}", reason="bad_parameter")
    states = [s for s in request.args.get("state", "").split(",") if s]
    if any(s not in STATES for s in states):
        raise ApiError(400, f"state must be a comma list of {', '.join(STATES)}", reason="bad_parameter")
    cursor = request.args.get("cursor") or None
    if cursor is not None and not CURSOR_RE.match(cursor):
        raise ApiError(400, "cursor must be a next_cursor value of an earlier page", reason="bad_parameter")
    views, next_cursor = _store().list_jobs(_caller().owner, states=states, limit=int(raw_limit), cursor=cursor)
    return jsonify({"jobs": [{**view, "links": _links(view["id"])} for view in views], "next_cursor": next_cursor})


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    status = _job_or_404(job_id)
    return jsonify({**status, "links": _links(job_id)})


def _result_document(job_id: str) -> dict[str, Any]:
    status = _job_or_404(job_id)
    if status["state"] != DONE:
        raise ApiError(409, f"job {job_id} is {status['state']}: no result yet" if "error" not in status
                       else f"job {job_id} failed: {status['error']}", state=status["state"])
    files = _files(job_id)
    if not files.has_result():
        raise ApiError(410, f"the result of job {job_id} is no longer in the job storage")
    return files.read_result()


@bp.get("/<job_id>/result")
def get_result(job_id: str) -> Response:
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, f"format must be 'json' or 'csv', got {fmt[:20]!r}")
    document = _result_document(job_id)
    if fmt == "csv":
        stem = Path(document.get("video") or "video").stem or "video"
        return Response(to_csv(document), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{secure_filename(stem)}_valence.csv"'})
    return jsonify(document)


@bp.get("/<job_id>/plot.png")
def get_plot(job_id: str) -> Response:
    return Response(render_png(_result_document(job_id)), mimetype="image/png")


@bp.delete("/<job_id>")
def delete_job(job_id: str) -> tuple[str, int]:
    _job_or_404(job_id)
    store = _store()
    task_ids = store.task_ids(job_id)
    store.delete(job_id)  # first: workers check the job exists before and after their work
    if task_ids:
        current_app.extensions["empathy_celery"].control.revoke(task_ids)
    _files(job_id).delete()
    log.info("job deleted", extra={"job": job_id, "client": _caller().name})
    return "", 204
