"""The Python client of the gateway's public API (``/v1/jobs``): submit, wait, results, list, delete, batch.

Only ``requests`` and the standard library: a researcher's script needs nothing else of the service. Every
request is retried on a connection error, 429, 502, 503 and 504, honouring ``Retry-After`` when the gateway
sends one (its per-key limits and a Redis restart do), else with exponential back-off. Uploads are retried
too, safely: each carries an ``Idempotency-Key`` (one per :meth:`Client.submit` call unless given), so a
retried upload returns the job the first one made instead of a second job.

    from empathy_client import Client
    client = Client("http://127.0.0.1:8080", api_key="...")        # or EMPATHY_API_KEY
    job = client.submit("Subject_1_Story_1.mp4", subject=1)
    job = client.wait(job.id, progress=lambda j: print(j.state, j.progress))
    result = client.result(job.id)                                  # result.valence: one value per frame
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

FINAL_STATES = ("done", "failed")
RETRIED_STATUSES = (429, 502, 503, 504)
MAX_RETRY_AFTER_S = 300.0


class ApiError(Exception):
    """The gateway refused a request (``status`` > 0) or could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class ModalityProgress:
    """One modality of a job: ``status`` queued | preparing | predicting | postprocessing | ok | unavailable |
    failed, ``progress`` 0..1, ``detail`` why it failed or saw nothing."""

    name: str
    status: str
    progress: float
    detail: str = ""
    seconds: float | None = None


@dataclass(frozen=True)
class Job:
    """A job as ``GET /v1/jobs/{id}`` shows it (times in epoch seconds); ``raw`` is the whole document."""

    id: str
    state: str
    progress: float
    filename: str
    subject: int
    created: float
    modalities: dict[str, ModalityProgress]
    started: float | None = None
    finished: float | None = None
    error: str = ""
    used: tuple[str, ...] = ()
    degraded: bool = False
    callback: dict[str, Any] | None = None
    replayed: bool = False  # submit: an earlier upload with the same idempotency key made this job
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished_state(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], *, replayed: bool = False) -> Job:
        modalities = {name: ModalityProgress(name, entry["status"], float(entry["progress"]), entry.get("detail", ""),
                                             entry.get("seconds"))
                      for name, entry in doc.get("modalities", {}).items()}
        return cls(id=doc["id"], state=doc["state"], progress=float(doc["progress"]), filename=doc.get("filename", ""),
                   subject=int(doc.get("subject") or 0), created=float(doc.get("created") or 0.0),
                   modalities=modalities, started=doc.get("started"), finished=doc.get("finished"),
                   error=doc.get("error", ""), used=tuple(doc.get("used") or ()), degraded=bool(doc.get("degraded")),
                   callback=doc.get("callback"), replayed=replayed, raw=dict(doc))


@dataclass(frozen=True)
class Result:
    """A job's result (``GET /v1/jobs/{id}/result``): per-frame series at ``fps``, None where missing."""

    job_id: str
    video: str
    subject: int
    fps: float
    n_frames: int
    valence: list[float | None]
    agreement: list[float | None]
    band_low: list[float | None]
    band_high: list[float | None]
    modalities: dict[str, list[float | None]]
    fusion: dict[str, Any]
    notes: list[str]
    degraded: bool
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Result:
        band = doc.get("band") or {}
        n = int(doc["n_frames"])
        return cls(job_id=doc.get("job") or "", video=doc.get("video") or "", subject=int(doc.get("subject") or 0),
                   fps=float(doc["fps"]), n_frames=n, valence=list(doc["valence"]), agreement=list(doc["agreement"]),
                   band_low=list(band.get("low") or [None] * n), band_high=list(band.get("high") or [None] * n),
                   modalities={name: list(entry.get("valence") or []) for name, entry in doc["modalities"].items()},
                   fusion=dict(doc.get("fusion") or {}), notes=list(doc.get("notes") or []),
                   degraded=bool(doc.get("degraded")), raw=dict(doc))


@dataclass(frozen=True)
class Page:
    """One page of ``GET /v1/jobs``: newest first; ``next_cursor`` None at the end."""

    jobs: list[Job]
    next_cursor: str | None


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class Client:
    """A client of one gateway with one API key (``api_key`` None: ``EMPATHY_API_KEY``).

    ``retries``: further attempts of a request after a retried failure; ``backoff_s``: the first wait when
    the gateway names none (doubling, at most ``max_backoff_s``). Thread-safe: each thread has its own
    HTTP session.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8080", api_key: str | None = None, *,
                 timeout_s: float = 60.0, upload_timeout_s: float = 600.0, retries: int = 5,
                 backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("EMPATHY_API_KEY") or None
        self.timeout_s = timeout_s
        self.upload_timeout_s = upload_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self._local = threading.local()

    # --- plumbing ------------------------------------------------------------------------------------
    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, *, files: Callable[[], dict[str, Any]] | None = None,
                **kwargs: Any) -> requests.Response:
        """One API call with retries; the 2xx answer, else :class:`ApiError`.

        ``files``: a function making the multipart parts afresh for each attempt (open files are consumed).
        """
        url = f"{self.base_url}{path}"
        kwargs.setdefault("timeout", self.upload_timeout_s if files is not None else self.timeout_s)
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        wait = self.backoff_s
        for attempt in range(self.retries + 1):
            parts = files() if files is not None else None
            try:
                response = self._session.request(method, url, files=parts, **kwargs)
            except requests.RequestException as exc:
                error = ApiError(0, f"cannot reach the gateway at {self.base_url}: {exc}")
            else:
                if response.status_code < 400:
                    return response
                error = ApiError(response.status_code, _error_text(response),
                                 retry_after=retry_after_seconds(response.headers.get("Retry-After")))
                if response.status_code not in RETRIED_STATUSES:
                    raise error
            finally:
                for part in (parts or {}).values():
                    handle = part[1] if isinstance(part, tuple) else part
                    if hasattr(handle, "close"):
                        handle.close()
            if attempt == self.retries:
                raise error
            delay = min(MAX_RETRY_AFTER_S, error.retry_after) if error.retry_after is not None else wait
            self.sleep(delay)
            wait = min(self.max_backoff_s, wait * 2)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # --- jobs ----------------------------------------------------------------------------------------
    def submit(self, video: str | Path, *, subject: int | None = None, modalities: Sequence[str] | None = None,
               fusion: str | None = None, listener: str | None = None, callback_url: str | None = None,
               transcript: str | Path | None = None, fields: Mapping[str, str] | None = None,
               idempotency_key: str | None = None) -> Job:
        """Upload a video; the job (``replayed``: this idempotency key had made it already).

        ``fields``: more form fields as text (what :class:`jobs.request.JobRequest` reads); the keyword
        arguments win over them.
        """
        video = Path(video)
        form = dict(fields or {})
        named = {"subject": None if subject is None else str(subject),
                 "modalities": None if modalities is None else ",".join(modalities),
                 "fusion": fusion, "listener": listener, "callback_url": callback_url}
        form.update({key: value for key, value in named.items() if value})

        def parts() -> dict[str, Any]:
            made: dict[str, Any] = {"video": (video.name, video.open("rb"), "application/octet-stream")}
            if transcript is not None:
                made["transcript"] = (Path(transcript).name, Path(transcript).open("rb"), "application/json")
            return made

        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        response = self.request("POST", "/v1/jobs", data=form, files=parts, headers=headers)
        return Job.from_json(response.json(), replayed=response.status_code == 200)

    def job(self, job_id: str) -> Job:
        return Job.from_json(self.request("GET", f"/v1/jobs/{job_id}").json())

    def wait(self, job_id: str, *, poll_s: float = 1.0, timeout_s: float = 3600.0,
             progress: Callable[[Job], None] | None = None) -> Job:
        """Poll until the job is done or failed (``progress`` gets every state seen); ``TimeoutError`` after
        ``timeout_s``. Transient trouble is retried by :meth:`request`; a refusal raises :class:`ApiError`."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if progress is not None:
                progress(job)
            if job.finished_state:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout_s:.0f} s")
            self.sleep(poll_s)

    def result(self, job_id: str) -> Result:
        return Result.from_json(self.request("GET", f"/v1/jobs/{job_id}/result").json())

    def result_csv(self, job_id: str) -> bytes:
        """The result as the service's CSV (``valence`` first: the layout the challenge's scorer reads)."""
        return self.request("GET", f"/v1/jobs/{job_id}/result", params={"format": "csv"}).content

    def jobs(self, *, state: str | Sequence[str] | None = None, limit: int = 20, cursor: str | None = None) -> Page:
        """One page of this key's jobs, newest first (``state``: one or several of queued/running/done/failed)."""
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state if isinstance(state, str) else ",".join(state)
        if cursor:
            params["cursor"] = cursor
        doc = self.request("GET", "/v1/jobs", params=params).json()
        return Page([Job.from_json(item) for item in doc["jobs"]], doc["next_cursor"])

    def iter_jobs(self, *, state: str | Sequence[str] | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job of this key, newest first, page after page."""
        cursor = None
        while True:
            page = self.jobs(state=state, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_results(self, job_ids: Sequence[str] | None = None) -> Iterator[tuple[Job, Result]]:
        """Each done job with its result: the given ones, or every done job of this key (newest first)."""
        jobs = (self.job(job_id) for job_id in job_ids) if job_ids is not None else self.iter_jobs(state="done")
        for job in jobs:
            if job.state == "done":
                yield job, self.result(job.id)

    def delete(self, job_id: str) -> None:
        self.request("DELETE", f"/v1/jobs/{job_id}")

    def webhook_secret(self) -> str:
        """This key's webhook secret: verify callbacks with :func:`empathy_client.webhooks.verify`."""
        return self.request("GET", "/v1/webhooks/secret").json()["secret"]

    def batch(self, videos: Sequence[str | Path], out_dir: str | Path, **options: Any) -> Any:
        """Every video through the service into ``out_dir/<name>.csv``, resumably: :func:`empathy_client.batch.run_batch`."""
        from empathy_client.batch import run_batch

        return run_batch(self, [Path(v) for v in videos], Path(out_dir), **options)


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:500]
