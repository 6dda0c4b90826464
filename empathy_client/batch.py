"""A folder of recordings through the service into a folder of prediction CSVs, resumably.

:func:`run_batch` submits every video (at most ``parallel`` in flight), waits for each, and writes
``out_dir/<video stem>.csv``, the service's CSV, whose ``valence`` column is what the challenge's scorer
reads (``empathy score out_dir annotations``). OMG-Empathy names (``Subject_<s>_Story_<k>.mp4``) give the
subject when the fields name none.

Resumable: run it again after Ctrl-C, a crash, or a gateway restart, and it

* skips every video whose CSV exists (CSVs are written whole: a temporary file renamed into place);
* re-attaches to the jobs still running: the manifest ``out_dir/.empathy-batch.json`` records each video's
  job and idempotency key as soon as they are known, and the key is derived from the video's bytes, the
  fields and the attempt number, so even a submission the manifest never heard of (killed between the
  upload and the manifest write) is answered with its job, not run twice;
* submits again (a new attempt, a new key) the videos whose job failed or vanished.

Failures are collected with their reasons and returned (:class:`BatchReport`), never skipped silently.
Once every video is done the manifest is removed, so ``out_dir`` holds exactly the scorer's layout (the
official script stops on any other file name).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empathy_client.client import ApiError

if TYPE_CHECKING:
    from empathy_client.client import Client

MANIFEST = ".empathy-batch.json"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
OMG_NAME = re.compile(r"^Subject_(\d+)_Story_(\d+)$")

# on_event(kind, video name, detail): kinds "skipped", "submitted", "reattached", "progress" (detail: the
# Job), "done" (detail: the CSV path), "failed" (detail: the reason)
EventHandler = Callable[[str, str, Any], None]


def find_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Videos named by ``inputs``: files, folders (their video files, not recursive) and glob patterns;
    sorted per input, each once. ``FileNotFoundError`` for an input that names nothing."""
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item)) if Path(p).is_file())
        if not matches:
            raise FileNotFoundError(f"no video in {item}")
        found.update(dict.fromkeys(matches))
    return list(found)


def subject_of(video: Path) -> int | None:
    """The subject of an OMG-Empathy name (``Subject_3_Story_1.mp4`` -> 3), else None."""
    match = OMG_NAME.match(video.stem)
    return int(match.group(1)) if match else None


def idempotency_key(video: Path, fields: Mapping[str, str], attempt: int) -> str:
    """The same video, fields and attempt give the same key (so the same job), whatever the manifest knows."""
    digest = hashlib.sha256()
    with video.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    digest.update(json.dumps(sorted(fields.items())).encode())
    return f"batch-{digest.hexdigest()[:40]}-{attempt}"


class Manifest:
    """``out_dir/.empathy-batch.json``: per video name, its idempotency key, attempt, job id, state, error.
    Saved whole after every change (a temporary file renamed into place), under a lock (threads share it)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / MANIFEST
        self.lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text()).get("files", {})

    def get(self, name: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.entries.get(name, {}))

    def update(self, name: str, **values: Any) -> None:
        with self.lock:
            self.entries.setdefault(name, {}).update(values)
            _write_atomically(self.path, json.dumps({"version": 1, "files": self.entries}, indent=1).encode())

    def remove(self) -> None:
        with self.lock:
            self.path.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass
class FileOutcome:
    video: Path
    csv: Path
    state: str  # done | skipped (its CSV existed) | failed
    job_id: str | None = None
    error: str = ""
    seconds: float = 0.0


@dataclass
class BatchReport:
    outcomes: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def of(self, state: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.state == state]

    @property
    def failed(self) -> list[FileOutcome]:
        return self.of("failed")


def run_batch(client: Client, videos: Sequence[Path], out_dir: Path, *, fields: Mapping[str, str] | None = None,
              parallel: int = 4, poll_s: float = 2.0, timeout_s: float = 6 * 3600.0,
              on_event: EventHandler | None = None) -> BatchReport:
    """Every video through ``client`` into ``out_dir/<stem>.csv`` (see the module's doc); the report.

    ``fields``: the form fields of every job (text, as :class:`jobs.request.JobRequest` reads them); a
    video's subject comes from its OMG-Empathy name unless ``fields`` gives one. ``parallel``: jobs in
    flight at once (uploads included).
    """
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = [video.stem for video in videos]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f"several videos would write the same CSV: {clashes[:5]}")
    for stale in out_dir.glob(".*.part"):  # a temporary file of a run killed while it wrote
        stale.unlink(missing_ok=True)
    manifest = Manifest(out_dir)
    notify = on_event or (lambda kind, name, detail: None)

    def one(video: Path) -> FileOutcome:
        began = time.monotonic()
        outcome = _process(client, video, out_dir, dict(fields or {}), manifest, notify, poll_s, timeout_s)
        outcome.seconds = time.monotonic() - began
        return outcome

    with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="batch") as pool:
        report = BatchReport(list(pool.map(one, videos)))
    report.seconds = time.monotonic() - started
    if not report.failed:
        manifest.remove()
    return report


def _process(client: Client, video: Path, out_dir: Path, fields: dict[str, str], manifest: Manifest,
             notify: EventHandler, poll_s: float, timeout_s: float) -> FileOutcome:
    name = video.name
    csv = out_dir / f"{video.stem}.csv"
    if csv.is_file():
        notify("skipped", name, csv)
        return FileOutcome(video, csv, "skipped", manifest.get(name).get("job"))
    if "subject" not in fields and subject_of(video) is not None:
        fields["subject"] = str(subject_of(video))
    job_id: str | None = None
    try:
        entry = manifest.get(name)
        attempt = int(entry.get("attempt") or 1)
        if entry.get("job") and entry.get("state") != "failed":
            try:
                job = client.job(entry["job"])
                job_id = job.id
                notify("reattached", name, job)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                attempt += 1  # expired or deleted: a new job
        elif entry.get("state") == "failed":
            attempt += 1  # failed before: try once more, as a new job
        if job_id is None:
            key = idempotency_key(video, fields, attempt)
            manifest.update(name, video=str(video.resolve()), key=key, attempt=attempt, job=None, state="submitting",
                            error="")
            job = client.submit(video, fields=fields, idempotency_key=key)
            job_id = job.id
            manifest.update(name, job=job_id, state="submitted")
            notify("reattached" if job.replayed else "submitted", name, job)
        final = client.wait(job_id, poll_s=poll_s, timeout_s=timeout_s,
                            progress=lambda current: notify("progress", name, current))
        if final.state != "done":
            reasons = [f"{m.name}: {m.detail}" for m in final.modalities.values() if m.detail]
            raise RuntimeError(f"job {job_id} failed: {final.error or 'unknown error'}"
                               + (f" ({'; '.join(reasons)})" if reasons else ""))
        _write_atomically(csv, client.result_csv(job_id))
        manifest.update(name, state="done")
        notify("done", name, csv)
        return FileOutcome(video, csv, "done", job_id)
    except (ApiError, RuntimeError, TimeoutError, OSError) as exc:
        reason = str(exc)
        transient = isinstance(exc, TimeoutError | OSError) or (isinstance(exc, ApiError) and
                                                                 (exc.status == 0 or exc.status >= 500))
        if transient and job_id is not None:  # the job may well go on: a rerun re-attaches to it
            reason += f" (job {job_id} may still finish: run the batch again to pick it up)"
            manifest.update(name, error=reason)
        else:
            manifest.update(name, state="failed", error=reason)
        notify("failed", name, reason)
        return FileOutcome(video, csv, "failed", job_id, reason)
