"""The versioned model repository shared by training (writer), TF Serving / our model server and the workers.

Layout follows TensorFlow Serving's convention: ``<models_dir>/<modality>/<version>/`` holds a SavedModel
(``saved_model.pb`` + ``variables/``), versions are positive integers and the highest one is served.
``metadata.json`` beside ``saved_model.pb`` carries everything post-processing and preprocessing need
(TF Serving ignores extra files), so a version directory is self-contained and can be copied as a unit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"


class ModelNotFoundError(FileNotFoundError):
    """No servable version of a model exists where one was expected."""


def list_versions(model_dir: Path | str) -> list[int]:
    """Versions (ascending) that are complete: a numeric directory holding a ``saved_model.pb``."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    versions = []
    for child in root.iterdir():
        if child.is_dir() and child.name.isdigit() and (child / "saved_model.pb").is_file():
            versions.append(int(child.name))
    return sorted(versions)


def latest_version(model_dir: Path | str) -> int:
    versions = list_versions(model_dir)
    if not versions:
        raise ModelNotFoundError(f"no SavedModel version under {model_dir} (expected {model_dir}/<n>/saved_model.pb)")
    return versions[-1]


def version_dir(models_dir: Path | str, modality: str, version: int | None = None) -> Path:
    """Directory of one version (the latest when ``version`` is None)."""
    model_dir = Path(models_dir) / modality
    if version is None:
        version = latest_version(model_dir)
    path = model_dir / str(version)
    if not (path / "saved_model.pb").is_file():
        raise ModelNotFoundError(f"model {modality!r} has no version {version} under {model_dir}")
    return path


def next_version(models_dir: Path | str, modality: str) -> int:
    versions = list_versions(Path(models_dir) / modality)
    return (versions[-1] + 1) if versions else 1


def read_metadata(path: Path | str) -> dict[str, Any]:
    """Metadata of a version directory (``path`` may also point at the JSON file itself)."""
    path = Path(path)
    file = path if path.suffix == ".json" else path / METADATA_FILE
    if not file.is_file():
        raise ModelNotFoundError(f"no {METADATA_FILE} in {file.parent}: was this version exported by `empathy train`?")
    return json.loads(file.read_text())


def load_metadata(models_dir: Path | str, modality: str, version: int | None = None) -> dict[str, Any]:
    return read_metadata(version_dir(models_dir, modality, version))


def publish_version(staging_dir: Path, models_dir: Path | str, modality: str, metadata: dict[str, Any],
                    version: int | None = None) -> Path:
    """Move a fully written SavedModel into place atomically, metadata first.

    A model server polling the directory must never see a half-written version, so the SavedModel is
    written to a staging directory on the same file system and renamed in one step.
    """
    models_dir = Path(models_dir)
    target_parent = models_dir / modality
    target_parent.mkdir(parents=True, exist_ok=True)
    version = next_version(models_dir, modality) if version is None else version
    metadata = {**metadata, "modality": modality, "version": version}
    (Path(staging_dir) / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True, default=float))
    target = target_parent / str(version)
    if target.exists():
        shutil.rmtree(target)
    # mkdtemp made it 0700: give it an ordinary directory's mode (the umask applies), so that model servers and
    # workers running as another user (the container images' uid 10001) can read the models they mount
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging_dir, 0o777 & ~umask)
    os.replace(staging_dir, target)
    return target


def staging_dir(models_dir: Path | str, modality: str) -> Path:
    """A fresh temporary directory next to the model's versions (same file system, so rename is atomic)."""
    parent = Path(models_dir) / modality
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
