"""Versioned models in the object store: ``s3://<bucket>/<prefix>/<modality>/<version>/...``, mirrored locally.

Why: on several machines, a model server or worker cannot read another host's ``models/``; the store is what
they share. The layout in the store is the local one (:mod:`serving.model_store`: TF Serving's
``<model>/<version>/`` plus ``metadata.json``; the fusion model is a version holding only its metadata), so
TensorFlow Serving can read the same prefix natively, and our processes mirror it into a local folder and
go on reading files.

A version in the store is complete once its ``metadata.json`` exists: :func:`push` uploads it last. The
mirror only copies complete versions, each into a temporary folder renamed into place, so a reader of the
local folder never sees half a version (:func:`serving.model_store.list_versions` ignores the temporary
names). :class:`ModelMirror` polls for new versions.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.model_store import METADATA_FILE
from shared.s3 import ObjectStoreError, parse_s3_url, s3_client
from shared.settings import Settings

log = logging.getLogger(__name__)

TEMP_PREFIX = ".mirror-"
POLL_S = 30.0  # workers and fusion: how often EMPATHY_MODELS_URL is asked for new versions


@dataclass(frozen=True)
class ModelLocation:
    """A prefix of a bucket that holds ``<modality>/<version>/`` folders (``s3://bucket/prefix``)."""

    client: Any
    bucket: str
    prefix: str

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> ModelLocation:
        bucket, prefix = parse_s3_url(url)
        return cls(s3_client(settings), bucket, prefix)

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def download(self, key: str, path: Path) -> None:
        """One object into a local file; ObjectStoreError (one line naming the place) when the store fails, so a
        failed poll is logged and retried, never the end of the polling thread."""
        try:
            self.client.download_file(self.bucket, key, str(path))
        except Exception as exc:  # noqa: BLE001 - botocore's errors, as one line naming the place
            raise ObjectStoreError(f"s3://{self.bucket}/{key}: {exc}") from None

    def objects(self, *parts: str) -> Iterator[dict[str, Any]]:
        prefix = self.key(*parts) + "/" if (parts or self.prefix) else ""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])
        except Exception as exc:  # noqa: BLE001 - botocore's errors, as one line naming the place
            raise ObjectStoreError(f"{self.url()}: {exc}") from None


def remote_versions(location: ModelLocation, only: str | None = None) -> dict[str, list[int]]:
    """Complete versions per model in the store (those whose ``metadata.json`` is there), ascending;
    ``only``: of that one model."""
    found: dict[str, list[int]] = {}
    base = location.key() + "/" if location.prefix else ""
    for item in location.objects(*([only] if only else [])):
        parts = item["Key"][len(base):].split("/")
        if len(parts) == 3 and parts[2] == METADATA_FILE and parts[1].isdigit():
            found.setdefault(parts[0], []).append(int(parts[1]))
    return {name: sorted(versions) for name, versions in sorted(found.items())}


def local_versions(models_dir: Path, modality: str) -> list[int]:
    """Versions already in the local folder (complete ones: the mirror renames a version in whole)."""
    root = Path(models_dir) / modality
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()) if root.is_dir() else []


def mirror_once(location: ModelLocation, models_dir: Path | str, only: str | None = None) -> list[tuple[str, int]]:
    """Copy every complete version the local folder lacks (``only``: of one model); the pairs copied."""
    models_dir = Path(models_dir)
    copied = []
    for modality, versions in remote_versions(location, only).items():
        have = set(local_versions(models_dir, modality))
        for version in (v for v in versions if v not in have):
            target = models_dir / modality / str(version)
            staging = models_dir / modality / f"{TEMP_PREFIX}{version}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            base = location.key(modality, str(version)) + "/"
            try:
                for item in location.objects(modality, str(version)):
                    relative = item["Key"][len(base):]
                    if not relative or relative.endswith("/") or ".." in relative.split("/"):
                        continue
                    path = staging / relative
                    path.parent.mkdir(parents=True, exist_ok=True)
                    location.download(item["Key"], path)
                os.rename(staging, target)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                if target.is_dir():  # another process sharing this folder (empathy up) mirrored it first
                    continue
                raise
            except Exception:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            copied.append((modality, version))
            log.info("model version mirrored", extra={"model": modality, "version": version,
                                                      "source": location.url()})
    return copied


def push(models_dir: Path | str, location: ModelLocation, *, modality: str | None = None,
         version: int | None = None) -> list[tuple[str, int]]:
    """Upload local versions (every one, or one model's, or one version) to the store, each version's
    ``metadata.json`` last (what makes it complete for a mirror); the (model, version) pairs pushed."""
    models_dir = Path(models_dir)
    models = [modality] if modality else sorted(p.name for p in models_dir.iterdir() if p.is_dir())
    pushed = []
    for name in models:
        versions = [version] if version is not None else local_versions(models_dir, name)
        for number in versions:
            folder = models_dir / name / str(number)
            if not (folder / METADATA_FILE).is_file():
                raise FileNotFoundError(f"{folder} has no {METADATA_FILE}: not a complete version")
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            for path in sorted(files, key=lambda p: p.name == METADATA_FILE):  # metadata.json last
                key = location.key(name, str(number), path.relative_to(folder).as_posix())
                try:
                    location.client.upload_file(str(path), location.bucket, key)
                except Exception as exc:  # noqa: BLE001 - one line naming where
                    raise ObjectStoreError(f"{location.url()}: uploading {key}: {exc}") from None
            pushed.append((name, number))
            log.info("model version pushed", extra={"model": name, "version": number, "to": location.url()})
    return pushed


class ModelMirror:
    """Mirrors a store prefix into a local folder now, then every ``poll_s`` seconds in a daemon thread."""

    def __init__(self, location: ModelLocation, models_dir: Path | str, *, poll_s: float = POLL_S,
                 only: str | None = None) -> None:
        self.location = location
        self.only = only
        self.models_dir = Path(models_dir)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the polling thread and refresh() stage versions under the same names
        self._thread: threading.Thread | None = None

    def start(self) -> list[tuple[str, int]]:
        """The first mirror (raises when the store cannot be read: nothing to serve), then the polling."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        copied = self.refresh()
        if self.poll_s > 0:
            self._thread = threading.Thread(target=self._poll, name="model-mirror", daemon=True)
            self._thread.start()
        return copied

    def refresh(self) -> list[tuple[str, int]]:
        """Mirror now, not at the next poll: a worker calls it once its model server serves a version, which
        may have been pushed after the worker's first mirror (its metadata must be here before a task)."""
        with self._lock:
            return mirror_once(self.location, self.models_dir, self.only)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except (ObjectStoreError, OSError) as exc:  # the store may come back: keep what we have
                log.warning("model mirror poll failed", extra={"source": self.location.url(), "error": str(exc)})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def split_model_url(url: str) -> tuple[str, str]:
    """``s3://b/models/audio`` (one model's base path, as TF Serving's ``--model_base_path``) ->
    (``s3://b/models``, ``audio``)."""
    parent, _, name = url.rstrip("/").rpartition("/")
    if not name or parent in {"s3:", "s3:/"}:
        raise ValueError(f"{url!r} names no model folder (s3://<bucket>/<prefix>/<model>)")
    return parent, name


def start_from_settings(settings: Settings, *, poll_s: float = POLL_S, only: str | None = None) -> ModelMirror | None:
    """``EMPATHY_MODELS_URL=s3://...``: mirror it (``only``: one model, a modality worker's own) into
    ``EMPATHY_MODELS_DIR`` and keep polling; None when the models come from the folder as it is (the image or a
    volume)."""
    if not settings.models_url:
        return None
    mirror = ModelMirror(ModelLocation.from_url(settings.models_url, settings), settings.models_dir, poll_s=poll_s,
                         only=only)
    mirror.start()
    return mirror
