"""Where uploads land while a request is read: temporary files the job storage takes over when a job is kept.

Werkzeug streams each multipart file part into a file object from the request's stream factory. Ours
creates it on the storage volume (``<storage>/uploads/.upload-<random>``), never in ``/tmp`` of the
gateway container and never under a name the client chose, so:

* the size limit (``MAX_CONTENT_LENGTH`` = ``EMPATHY_MAX_UPLOAD_MB``) is enforced by werkzeug while the
  body streams in (413 before anything is read when ``Content-Length`` says so, or as soon as a chunked
  body passes the limit);
* a kept video is handed to the job storage (:meth:`jobs.files.JobFiles.put_video`; the local backend
  *moves* it, a rename on the same volume: no second copy of a 1 GiB file);
* every temporary file still there when the request ends (rejected, too large, replayed, failed) is
  deleted by :meth:`UploadRequest.close`, which Flask calls at the end of every request.

The client's file name is only ever a label (``sanitize_filename``): stored names are generated.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app

UPLOADS_DIR = "uploads"
MAX_FILENAME_CHARS = 200
_SUFFIX_RE = re.compile(r"^\.[a-z0-9]{1,8}$")


def uploads_dir(storage_dir: Path | str) -> Path:
    return Path(storage_dir) / UPLOADS_DIR


class UploadRequest(Request):
    """A Flask request whose uploaded files are temporary files on the storage volume, removed at the end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.temporary_uploads: list[Any] = []

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        directory = uploads_dir(current_app.config["EMPATHY_SETTINGS"].storage_dir)
        directory.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".upload-", delete=False)  # noqa: SIM115
        self.temporary_uploads.append(handle)
        return handle

    def close(self) -> None:
        """Close the uploaded files and delete those not moved into a job directory."""
        try:
            super().close()
        finally:
            for handle in self.temporary_uploads:
                handle.close()
                Path(handle.name).unlink(missing_ok=True)


def upload_path(stream: Any) -> Path | None:
    """The temporary file behind an uploaded part (None for parts werkzeug kept in memory)."""
    name = getattr(stream, "name", None)
    return Path(name) if isinstance(name, str) else None


def sanitize_filename(name: str | None) -> str:
    """The client's file name as a display label: last path component, printable, bounded length.

    ``../../etc/passwd`` -> ``passwd``; ``C:\\videos\\a.mp4`` -> ``a.mp4``. Never used to build a path.
    """
    base = re.split(r"[/\\]", name or "")[-1]
    printable = "".join(c for c in unicodedata.normalize("NFC", base) if unicodedata.category(c)[0] not in "CZ"
                        or c == " ")
    cleaned = printable.strip().lstrip(".")
    return cleaned[:MAX_FILENAME_CHARS] or "upload"


def stored_suffix(name: str | None) -> str:
    """Extension of the stored copy: the client's, when it is a plain short one, else ``.bin``.

    FFmpeg recognises containers by their content, so the suffix only helps a human reading the volume.
    """
    suffix = Path(sanitize_filename(name)).suffix.lower()
    return suffix if _SUFFIX_RE.match(suffix) else ".bin"
