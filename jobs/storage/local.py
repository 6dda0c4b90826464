"""The local-directory backend: ``<EMPATHY_STORAGE_DIR>/jobs/<id>/<name>``, a volume every process mounts.

Writes go to a temporary name beside the target and are renamed over it (atomic on one file system).
:meth:`LocalStorage.fetch` hard-links where it can (blobs are only ever replaced, never changed in place,
so a link is as private as a copy, and free), and copies otherwise.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import IO

from jobs.storage.base import BlobNotFound, JobStorage, StorageUnavailable, check_blob_name, check_job_id
from jobs.store import valid_job_id
from shared.settings import Settings

TEMP_MARK = ".tmp-"  # in the names of files being written: never listed as blobs


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temporary name in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LocalStorage(JobStorage):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStorage:
        return cls(settings.storage_dir)

    def job_dir(self, job_id: str) -> Path:
        check_job_id(job_id)
        return self.root / "jobs" / job_id

    def path(self, job_id: str, name: str) -> Path:
        """The file of a blob (this backend only: tests and this module)."""
        check_blob_name(job_id, name)
        return self.root / "jobs" / job_id / name

    def put_bytes(self, job_id: str, name: str, data: bytes) -> None:
        atomic_write(self.path(job_id, name), data)

    def put_file(self, job_id: str, name: str, source: Path, *, move: bool = False) -> None:
        target = self.path(job_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(source, target)  # same volume: a rename, no second copy of a large upload
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        tmp = target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        if move:
            Path(source).unlink(missing_ok=True)

    def open(self, job_id: str, name: str) -> IO[bytes]:
        try:
            return self.path(job_id, name).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"job {job_id} has no {name}") from None

    def fetch(self, job_id: str, name: str, target: Path) -> Path:
        source = self.path(job_id, name)
        try:
            os.link(source, target)
        except FileNotFoundError:
            raise BlobNotFound(f"job {job_id} has no {name}") from None
        except OSError:  # another file system, or links not allowed: copy
            return super().fetch(job_id, name, target)
        return Path(target)

    def exists(self, job_id: str, name: str) -> bool:
        return self.path(job_id, name).is_file()

    def names(self, job_id: str) -> list[str]:
        directory = self.job_dir(job_id)
        if not directory.is_dir():
            return []
        return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                      if p.is_file() and TEMP_MARK not in p.name)

    def job_exists(self, job_id: str) -> bool:
        return self.job_dir(job_id).is_dir()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"storage folder {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"storage folder {self.root}: not writable")

    def expire(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        jobs = self.root / "jobs"
        expired = []
        for directory in sorted(jobs.iterdir()) if jobs.is_dir() else []:
            if not valid_job_id(directory.name):
                continue
            stamps = [p.stat().st_mtime for p in directory.rglob("*") if p.is_file()] or [directory.stat().st_mtime]
            if now - max(stamps) > older_than_s:
                shutil.rmtree(directory, ignore_errors=True)
                expired.append(directory.name)
        return expired

    def delete(self, job_id: str) -> bool:
        directory = self.job_dir(job_id)
        if not directory.exists():
            return False
        shutil.rmtree(directory)
        return True
