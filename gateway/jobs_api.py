"""``/v1/jobs``: upload a video, follow its analysis, fetch the result (JSON, CSV or a plot), delete it.

The gateway never analyses anything itself: it validates the upload, stores it on the shared volume,
records the job in Redis and sends the Celery chord. Everything it returns comes from the job store
(state) or from the result document the fusion worker wrote (result, CSV, plot).

Every route needs the caller's API key (:mod:`gateway.auth`) and sees only the caller's jobs: a job of
another key answers 404 exactly like a job that does not exist, so ids cannot be probed. Uploads are
checked before anything is kept (:mod:`gateway.uploads`): size while streaming (413), then PyAV's probe
(415 for anything that is not a decodable video), then the duration limit (413). A rejected upload leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import redis
from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from kombu.exceptions import OperationalError
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from gateway.auth import Authenticator, Caller, FailureLimiter, presented_key
from gateway.uploads import keep_upload, sanitize_filename, stored_suffix, upload_path
from jobs.files import job_dir, read_json, remove_job
from jobs.store import DONE, IdempotencyConflict, JobStore, new_job_id, parse_subject, valid_job_id
from services.celery_app import dispatch_job
from shared.asr import ASRError, read_word_file
from shared.crops import check_listener_spec
from shared.data import TranscriptError
from shared.fusion import check_spec
from shared.media import MediaError, MediaLimitError, VideoInfo, check_limits, check_video_input, probe
from shared.plot import render_png
from shared.results import to_csv
from shared.settings import MODALITIES, Settings

log = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII without spaces, as in the IETF draft
FORM_FIELDS = frozenset({"subject", "modalities", "fusion", "listener"})
FILE_FIELDS = frozenset({"video", "transcript"})


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status (and optional headers)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def _settings() -> Settings:
    return current_app.config["EMPATHY_SETTINGS"]


def _store() -> JobStore:
    return current_app.extensions["empathy_jobs"]


def _caller() -> Caller:
    return g.caller


def _limiter() -> FailureLimiter:
    return current_app.extensions["empathy_failures"]


def _failure_subjects(caller: Caller | None = None) -> tuple[str, ...]:
    """What a refused request counts against: the client's address, and the key it presented."""
    key = f"key:{caller.owner[:32]}" if caller is not None else presented_key(request.headers.get("Authorization"))
    return (f"addr:{request.remote_addr}", *([key] if key else []))


@bp.before_request
def authenticate() -> None:
    """Every ``/v1/jobs`` request names its key before anything is read (an upload included).

    A client address or key that was refused too often lately gets 429 before its key is even checked.
    """
    retry_after = _limiter().retry_after(*_failure_subjects())
    if retry_after is not None:
        log.warning("refused: too many failed requests", extra={"path": request.path, "remote": request.remote_addr})
        raise ApiError(429, "too many refused requests (unknown key or job) from this client; retry later "
                            "(EMPATHY_AUTH_FAILURE_LIMIT)",
                       headers={"Retry-After": str(max(1, int(retry_after + 0.999))), "Connection": "close"})
    authenticator: Authenticator = current_app.extensions["empathy_auth"]
    caller = authenticator.identify(request.headers.get("Authorization"))
    if caller is None:
        _limiter().record(*_failure_subjects())
        log.warning("refused: missing or invalid API key", extra={"path": request.path, "method": request.method,
                                                                   "remote": request.remote_addr})
        raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <token>' "
                            "(empathy submit --api-key / EMPATHY_API_KEY)",
                       headers={"WWW-Authenticate": 'Bearer realm="empathy"', "Connection": "close"})
    g.caller = caller


def _job_or_404(job_id: str) -> dict[str, Any]:
    """The caller's job; another key's job is reported exactly like an unknown one."""
    store = _store()
    status = None
    if valid_job_id(job_id) and Authenticator.owns(_caller(), store.owner(job_id)):
        status = store.status(job_id)
    if status is None:
        _limiter().record(*_failure_subjects(_caller()))
        raise ApiError(404, f"no job {job_id[:64]!r} (unknown, deleted or expired)")
    return status


def _links(job_id: str) -> dict[str, str]:
    return {"self": url_for("jobs.get_job", job_id=job_id), "result": url_for("jobs.get_result", job_id=job_id),
            "plot": url_for("jobs.get_plot", job_id=job_id)}


# --- request fields --------------------------------------------------------------------------------------
def _check_fields() -> None:
    """Unknown or repeated fields are mistakes (``subjet=3`` must not silently become subject 0)."""
    misplaced = sorted(FILE_FIELDS & set(request.form))
    if misplaced:
        raise ApiError(400, f"form fields {misplaced} must be file uploads (multipart parts with a filename)")
    unknown = sorted((set(request.form) - FORM_FIELDS) | (set(request.files) - FILE_FIELDS))
    if unknown:
        shown = [name[:40] for name in unknown[:10]]  # echo a bounded amount of what the client sent
        raise ApiError(400, f"unknown form fields {shown}; expected {sorted(FORM_FIELDS | FILE_FIELDS)}")
    for name in ("subject", "fusion", "listener", *FILE_FIELDS):
        if len(request.form.getlist(name)) + len(request.files.getlist(name)) > 1:
            raise ApiError(400, f"form field {name!r} given more than once")


def _parse_subject(raw: str | None, default: int) -> int:
    """The job's subject, validated once here (:func:`jobs.store.parse_subject`); empty = ``default``."""
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse_subject(raw)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _parse_listener(raw: str | None) -> str:
    """The job's listener region spec ('' = the service's EMPATHY_LISTENER_CROP); 400 when malformed."""
    if raw is None or not raw.strip():
        return ""
    try:
        return check_listener_spec(raw[:200])
    except ValueError as exc:
        raise ApiError(400, f"listener: {exc}") from None


def _parse_modalities(values: list[str]) -> list[str]:
    """Accepts ``modalities=audio,text`` or repeated ``modalities`` fields; none = every modality of the registry."""
    requested = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not requested:
        return list(MODALITIES)
    unknown = sorted(set(requested) - set(MODALITIES))
    if unknown:
        raise ApiError(400, f"unknown modalities {[u[:30] for u in unknown[:5]]}; choose among {list(MODALITIES)}")
    return [name for name in MODALITIES if name in requested]  # canonical order, no duplicates


def _parse_fusion(raw: str | None) -> str:
    """The job's fusion (``ccc``, ``paper``, ``learned`` or explicit weights); empty = the configured one."""
    if raw is None or raw.strip() == "":
        return ""
    try:
        return check_spec(raw[:200])
    except ValueError as exc:
        raise ApiError(400, f"bad fusion: {exc}") from None


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
        raise ApiError(500, "the upload was not streamed to the storage volume")
    upload.stream.flush()
    if path.stat().st_size == 0:
        raise ApiError(400, "the uploaded video is empty (0 bytes)")
    return path, sanitize_filename(upload.filename)


def _check_video(path: Path, label: str, settings: Settings) -> VideoInfo:
    """PyAV's probe of the upload: 413 when its frames or pixel rate exceed the limits (headers only, before
    anything decodes a frame), 415 unless it is a decodable video of some length, 413 when too long."""
    try:
        info = probe(path)
    except MediaError as exc:
        reason = str(exc).replace(str(path), label)  # the client's name, not the server's path
        raise ApiError(415, f"not a usable video: {reason}", kind=type(exc).__name__) from None
    try:
        check_limits(info, max_frame_size=settings.max_frame_size, max_pixel_rate=settings.max_pixel_rate)
    except MediaLimitError as exc:
        raise ApiError(413, str(exc).replace(path.name, label), kind="MediaLimitError") from None
    try:
        check_video_input(info, min_duration_s=settings.min_duration_s, label=label)  # what `analyze` checks too
    except MediaError as exc:
        raise ApiError(415, f"not a usable video: {exc}", kind=type(exc).__name__) from None
    if info.duration_s > settings.max_duration_s:
        raise ApiError(413, f"the video lasts {info.duration_s:.0f} s, longer than the limit of "
                            f"{settings.max_duration_s:.0f} s (EMPATHY_MAX_DURATION_S)")
    return info


def _check_transcript(upload: FileStorage, target: Path) -> None:
    keep_upload(upload.stream, target)
    try:
        read_word_file(target)
    except (TranscriptError, ASRError, ValueError) as exc:
        raise ApiError(400, f"bad transcript: {str(exc).replace(str(target), 'transcript')}") from None


def _fingerprint(video: Path, subject: int, modalities: list[str], transcript: FileStorage | None,
                 fusion: str = "", listener: str = "") -> str:
    """What makes two submissions "the same upload": the video's bytes and every option."""
    digest = hashlib.sha256()
    with video.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    digest.update(f"|{subject}|{','.join(modalities)}|{fusion}|{listener}|".encode())
    if transcript is not None:
        transcript.stream.seek(0)
        digest.update(transcript.stream.read())
    return digest.hexdigest()


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
    _check_fields()  # reads the body: 413 here when it is larger than EMPATHY_MAX_UPLOAD_MB
    subject = _parse_subject(request.form.get("subject"), settings.default_subject)
    modalities = _parse_modalities(request.form.getlist("modalities"))
    fusion = _parse_fusion(request.form.get("fusion"))
    listener = _parse_listener(request.form.get("listener"))
    video_part = request.files.get("video")
    upload, filename = _uploaded_video(video_part)
    info = _check_video(upload, filename, settings)
    transcript = request.files.get("transcript")
    if transcript is not None and not transcript.filename:
        transcript = None
    job_id = new_job_id()
    if idempotency is not None:
        try:
            existing = _store().claim_idempotency_key(caller.owner, idempotency, job_id,
                                                      _fingerprint(upload, subject, modalities, transcript, fusion,
                                                                   listener))
        except IdempotencyConflict as exc:
            raise ApiError(422, f"{IDEMPOTENCY_HEADER} reused: {exc}") from None
        if existing is not None:
            log.info("idempotent replay", extra={"job": existing, "client": caller.name})
            return _replay(existing)
    try:
        return _accept(job_id, video_part, filename, info, subject, modalities, transcript, fusion, listener)
    except Exception:
        remove_job(settings.storage_dir, job_id)
        if idempotency is not None:
            _release_quietly(caller.owner, idempotency)
        raise


def _release_quietly(owner: str, key: str) -> None:
    try:
        _store().release_idempotency_key(owner, key)
    except redis.RedisError:
        log.warning("could not release an idempotency key; it expires with the job TTL")


def _accept(job_id: str, video_part: FileStorage, filename: str, info: VideoInfo, subject: int,
            modalities: list[str], transcript: FileStorage | None,
            fusion: str = "", listener: str = "") -> tuple[Response, int, dict[str, str]]:
    """Keep the upload under a generated name, record the job, send its chord."""
    settings = _settings()
    directory = job_dir(settings.storage_dir, job_id)
    video = directory / f"video{stored_suffix(filename)}"
    keep_upload(video_part.stream, video)
    if transcript is not None:
        _check_transcript(transcript, directory / "transcript.json")
    store = _store()
    store.create(job_id, subject=subject, filename=filename, video=str(video), modalities=modalities,
                 owner=_caller().owner, fusion=fusion, listener=listener)
    try:
        task_ids = dispatch_job(current_app.extensions["empathy_celery"], job_id, modalities)
    except (OperationalError, redis.RedisError) as exc:
        store.delete(job_id)
        raise ApiError(503, f"the job queue is unavailable, nothing was kept; retry later ({exc})") from None
    store.set_task_ids(job_id, task_ids)
    metrics = current_app.extensions["empathy_metrics"]
    metrics.jobs.inc()
    metrics.upload_bytes.inc(video.stat().st_size)
    log.info("job accepted", extra={"job": job_id, "client": _caller().name, "subject": subject,
                                    "modalities": modalities, "upload": filename, "frames": info.n_frames,
                                    "duration_s": info.duration_s})
    body = {**(store.status(job_id) or {}), "links": _links(job_id), "n_frames": info.n_frames,
            "duration_s": info.duration_s}
    return jsonify(body), 202, {"Location": url_for("jobs.get_job", job_id=job_id)}


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    status = _job_or_404(job_id)
    return jsonify({**status, "links": _links(job_id)})


def _result_document(job_id: str) -> dict[str, Any]:
    status = _job_or_404(job_id)
    if status["state"] != DONE:
        raise ApiError(409, f"job {job_id} is {status['state']}: no result yet" if "error" not in status
                       else f"job {job_id} failed: {status['error']}", state=status["state"])
    path = job_dir(_settings().storage_dir, job_id) / "result.json"
    if not path.is_file():
        raise ApiError(410, f"the result of job {job_id} is no longer on the storage volume")
    return read_json(path)


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
    remove_job(_settings().storage_dir, job_id)
    log.info("job deleted", extra={"job": job_id, "client": _caller().name})
    return "", 204
