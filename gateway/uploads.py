"""Where uploads land while a request is read: temporary files the job storage takes over when a job is kept.

Werkzeug streams each multipart file part into a file object from the request's stream factory. Ours
creates it, never under a name the client chose, on the storage volume with the local backend
(``<storage>/uploads/.upload-<random>``: storing it is then a rename) and in the machine's temporary folder with
an object store (from where it is uploaded into the store and deleted), so:

* the size limit (``MAX_CONTENT_LENGTH`` = ``EMPATHY_MAX_UPLOAD_MB``) is enforced by werkzeug while the
  body streams in (413 before anything is read when ``Content-Length`` says so, or as soon as a chunked
  body passes the limit);
* a kept video is handed to the job storage (:meth:`jobs.files.JobFiles.put_video`; the local backend
  *moves* it, a rename on the same volume: no second copy of a 1 GiB file);
* every temporary file still there when the request ends (rejected, too large, replayed, failed) is
  deleted by :meth:`UploadRequest.close`, which Flask calls at the end of every request;
* the form itself is bounded (:class:`BoundedMultiPartParser`): at most :data:`MAX_FORM_PARTS` parts, of
  which at most :data:`MAX_FILE_PARTS` files (the API takes two: ``video`` and ``transcript``), each text
  field at most :data:`MAX_FIELD_BYTES`; each limit is its own 413 (:class:`FormLimitError`) naming it. So
  one request holds at most two temporary files and their descriptors, and a few kilobytes of fields,
  whatever it sends (999 one-byte file parts used to open 999 files each, until the gateway ran out of file
  descriptors and answered 500).

The client's file name is only ever a label (``sanitize_filename``): stored names are generated.
"""

from __future__ import annotations

import io
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

UPLOADS_DIR = "uploads"
MAX_FILENAME_CHARS = 200
_SUFFIX_RE = re.compile(r"^\.[a-z0-9]{1,8}$")


MAX_FORM_PARTS = 16  # subject, modalities (repeatable), fusion, listener, video, transcript: with room to spare
MAX_FILE_PARTS = 2  # video, transcript
MAX_FIELD_BYTES = 8 * 1024  # a text field (a listener spec per subject is the longest: ~100 bytes)
MAX_PART_HEADER_BYTES = 1024 * 1024  # what the parser may buffer while it looks for a part's end of headers
MAX_TRANSCRIPT_BYTES = 16 << 20  # a transcript is parsed in memory; word timings of 30 minutes are ~0.5 MB


def uploads_dir(storage_dir: Path | str) -> Path:
    return Path(storage_dir) / UPLOADS_DIR


def form_limits() -> dict[str, int]:
    """The form's limits, for ``/metrics``."""
    return {"max_form_parts": MAX_FORM_PARTS, "max_file_parts": MAX_FILE_PARTS, "max_field_bytes": MAX_FIELD_BYTES,
            "max_transcript_bytes": MAX_TRANSCRIPT_BYTES}


class FormLimitError(RequestEntityTooLarge):
    """A form over one of its limits: 413 with a message naming that limit (``reason`` for the metrics)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(description=message)
        self.reason = reason


class BoundedMultiPartParser(MultiPartParser):
    """werkzeug's multipart parser with limits on parts, file parts and field size that say which was hit.

    werkzeug has limits on parts and on field size, but both raise the same bare 413, which the gateway
    answered as "upload larger than 1024 MiB" for a 50 MB text field; its loop is repeated here with
    each limit checked as the events come.
    """

    def parse(self, stream: IO[bytes], boundary: bytes,
              content_length: int | None) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        decoder = MultipartDecoder(boundary, max_form_memory_size=MAX_PART_HEADER_BYTES)
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []
        parts = file_parts = 0
        part: Field | File | None = None
        chunks: list[bytes] = []
        size = 0
        container: IO[bytes] | None = None
        while True:
            data = stream.read(self.buffer_size)
            try:
                decoder.receive_data(data or None)
            except RequestEntityTooLarge:
                raise FormLimitError("form_part_headers", "a multipart part whose headers do not end within "
                                     f"{MAX_PART_HEADER_BYTES // 1024} KiB") from None
            event = decoder.next_event()
            while not isinstance(event, (Epilogue, NeedData)):
                if isinstance(event, (Field, File)):
                    parts += 1
                    if parts > MAX_FORM_PARTS:
                        raise FormLimitError("form_parts", f"more than {MAX_FORM_PARTS} parts in the form")
                    part, chunks, size, container = event, [], 0, None
                    if isinstance(event, File):
                        file_parts += 1
                        if file_parts > MAX_FILE_PARTS:
                            raise FormLimitError("form_file_parts", f"more than {MAX_FILE_PARTS} files in the form "
                                                 "(the API takes 'video' and 'transcript')")
                        container = self.start_file_streaming(event, content_length)
                elif isinstance(event, Data) and part is not None:
                    if container is not None:
                        container.write(event.data)
                    else:
                        size += len(event.data)
                        if size > MAX_FIELD_BYTES:
                            raise FormLimitError("form_field_too_large", f"form field {str(part.name)[:40]!r} is "
                                                 f"larger than {MAX_FIELD_BYTES // 1024} KiB")
                        chunks.append(event.data)
                    if not event.more_data:
                        if container is not None:
                            container.seek(0)
                            files.append((part.name, FileStorage(container, part.filename, part.name,
                                                                 headers=part.headers)))
                        else:
                            fields.append((part.name, b"".join(chunks).decode(self.get_part_charset(part.headers),
                                                                               "replace")))
                        part = None
                event = decoder.next_event()
            if not data:
                break
        return self.cls(fields), self.cls(files)


class BoundedFormDataParser(FormDataParser):
    """Multipart forms through :class:`BoundedMultiPartParser`; URL-encoded ones no larger than a form's fields."""

    def _parse_multipart(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> Any:
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = BoundedMultiPartParser(stream_factory=self.stream_factory, cls=self.cls)
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files

    def _parse_urlencoded(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                          options: dict[str, str]) -> Any:
        limit = MAX_FORM_PARTS * MAX_FIELD_BYTES  # werkzeug reads the whole body into memory for these
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise FormLimitError("form_too_large", f"a URL-encoded form larger than {limit // 1024} KiB "
                                 "(send multipart/form-data)")
        return super()._parse_urlencoded(io.BytesIO(data), mimetype, content_length, options)


class UploadRequest(Request):
    """A Flask request whose uploaded files are temporary files (the storage volume or the temporary folder), removed at the end,
    and whose form is bounded in parts, files and field size (:class:`BoundedFormDataParser`)."""

    form_data_parser_class = BoundedFormDataParser

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.temporary_uploads: list[Any] = []

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        settings = current_app.config["EMPATHY_SETTINGS"]
        # local storage: spool on its volume (storing the upload is then a rename); an object store: in this
        # machine's temporary folder (the upload is streamed on into the store and the spool file deleted)
        directory = uploads_dir(settings.storage_dir) if settings.storage_backend == "local" else None
        if directory is not None:
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
