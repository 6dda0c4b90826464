"""Which model versions are served: configuration, file-system polling, loading and unloading.

Mirrors TensorFlow Serving's model manager over the same ``<base_path>/<version>/`` layout: every
``file_system_poll_wait_seconds`` the version directories are listed, the version policy (``latest`` with
``num_versions`` = 1 by default, ``all`` or ``specific``) picks the versions to serve, new ones are loaded
*before* old ones are unloaded (TF Serving's availability-preserving policy) and versions whose directory
disappeared are unloaded. A version that fails to load is reported (state END with the error) and not
retried until its ``saved_model.pb`` changes, so a broken export cannot stall the poll loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from serving.model_store import list_versions
from serving.servable import Servable, ServableError

log = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50  # ModelVersionStatus.State values


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ServableVersionPolicy: ``latest`` (num_versions), ``all`` or ``specific`` (versions)."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: Iterable[int]) -> set[int]:
        ordered = sorted(available)
        if self.kind == "all":
            return set(ordered)
        if self.kind == "specific":
            return set(ordered) & set(self.versions)
        return set(ordered[-max(1, self.num_versions):]) if ordered else set()


@dataclass(frozen=True)
class ModelConfig:
    """One served model: its name (the ``model_spec.name`` of requests) and its versions' parent directory."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


def parse_model_config_text(text: str) -> list[ModelConfig]:
    """Parse TF Serving's ``--model_config_file`` text proto (``model_config_list { config { ... } }``)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    server_config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, server_config)
    except text_format.ParseError as exc:
        raise ValueError(f"model config is not a valid ModelServerConfig text proto: {exc}") from exc
    if server_config.WhichOneof("config") == "custom_model_config":
        raise ValueError("custom_model_config is not supported: use model_config_list")
    configs = []
    for config in server_config.model_config_list.config:
        if not config.name or not config.base_path:
            raise ValueError(f"every model config needs a name and a base_path, got: {config}")
        if config.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {config.name!r}: only model_platform \"tensorflow\" is supported, "
                             f"got {config.model_platform!r}")
        policy_proto = config.model_version_policy
        kind = policy_proto.WhichOneof("policy_choice") or "latest"
        policy = VersionPolicy(
            kind=kind,
            num_versions=policy_proto.latest.num_versions or 1,
            versions=tuple(int(v) for v in policy_proto.specific.versions),
        )
        configs.append(ModelConfig(name=config.name, base_path=Path(config.base_path), policy=policy,
                                   labels={k: int(v) for k, v in config.version_labels.items()}))
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique in a model config, got {names}")
    return configs


def parse_model_config_file(path: Path | str) -> list[ModelConfig]:
    return parse_model_config_text(Path(path).read_text())


def model_configs_from_dir(models_dir: Path | str) -> list[ModelConfig]:
    """One model per (non-hidden) subdirectory of ``models_dir``, named after it: ``models/<modality>/``."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return [ModelConfig(name=child.name, base_path=child) for child in sorted(root.iterdir())
            if child.is_dir() and not child.name.startswith((".", "_"))]


@dataclass
class VersionStatus:
    """Lifecycle of one version as GetModelStatus reports it."""

    state: int
    error_code: str = "OK"
    error_message: str = ""


@dataclass
class _Model:
    config: ModelConfig
    servables: dict[int, Servable] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    failed: dict[int, float] = field(default_factory=dict)  # version -> mtime of the saved_model.pb that failed
    warned_empty: bool = False
    retired: bool = False  # dropped by a config reload: unload everything


class ModelRepository:
    """The set of served models and their loaded versions; thread-safe, polled by a background thread.

    ``models_root``: also serve every subdirectory that appears there later (``--models-dir``), so that a
    model trained after the server started is picked up like a new version.
    """

    def __init__(self, configs: Iterable[ModelConfig] = (), *, models_root: Path | str | None = None,
                 poll_wait_s: float = 1.0) -> None:
        self.models_root = Path(models_root) if models_root is not None else None
        self.poll_wait_s = poll_wait_s
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.set_configs(configs)

    # --- configuration ---------------------------------------------------------------------------------
    def set_configs(self, configs: Iterable[ModelConfig]) -> None:
        """Replace the served models (HandleReloadConfigRequest); dropped models are unloaded on next poll."""
        configs = list(configs)
        with self._lock:
            wanted = {c.name: c for c in configs}
            for name, model in self._models.items():
                model.retired = name not in wanted and not self._discovered(name)
            for config in configs:
                if config.name in self._models:
                    self._models[config.name].config = config
                else:
                    self._models[config.name] = _Model(config=config)

    def _discovered(self, name: str) -> bool:
        return self.models_root is not None and (self.models_root / name).is_dir()

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    # --- polling -----------------------------------------------------------------------------------------
    def poll_once(self) -> None:
        """Bring loaded versions in line with the file system (one pass over every model)."""
        with self._poll_lock:
            if self.models_root is not None:
                with self._lock:
                    for config in model_configs_from_dir(self.models_root):
                        self._models.setdefault(config.name, _Model(config=config))
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._sync_model(model)

    def _sync_model(self, model: _Model) -> None:
        config = model.config
        available = list_versions(config.base_path)
        wanted = set() if model.retired else config.policy.select(available)
        if not available and not model.warned_empty:
            log.warning("no servable version found", extra={"model": config.name, "base_path": str(config.base_path)})
            model.warned_empty = True
        if available:
            model.warned_empty = False
        for version in sorted(wanted - set(model.servables), reverse=True):
            self._load(model, version)
        with self._lock:
            stale = [v for v in model.servables if v not in wanted]
        for version in stale:
            self._unload(model, version)

    def _load(self, model: _Model, version: int) -> None:
        path = model.config.base_path / str(version)
        try:
            mtime = (path / "saved_model.pb").stat().st_mtime
        except OSError:
            return  # disappeared between listing and loading: the next poll sees the truth
        if model.failed.get(version) == mtime:
            return
        with self._lock:
            model.statuses[version] = VersionStatus(LOADING)
        try:
            servable = Servable(path, model=model.config.name, version=version)
        except Exception as exc:  # any load failure must be reported, never kill the poll loop
            log.error("failed to load version",
                      extra={"model": model.config.name, "version": version, "error": str(exc)})
            model.failed[version] = mtime
            with self._lock:
                model.statuses[version] = VersionStatus(END, "UNKNOWN", f"failed to load {path}: {exc}")
            return
        model.failed.pop(version, None)
        with self._lock:
            model.servables[version] = servable
            model.statuses[version] = VersionStatus(AVAILABLE)
        log.info("serving version", extra={"model": model.config.name, "version": version})

    def _unload(self, model: _Model, version: int) -> None:
        with self._lock:
            model.statuses[version] = VersionStatus(UNLOADING)
            model.servables.pop(version, None)
            model.statuses[version] = VersionStatus(END)
        log.info("unloaded version", extra={"model": model.config.name, "version": version})

    def start(self) -> None:
        """Load what is there now, then keep polling every ``poll_wait_s`` seconds (unless <= 0)."""
        self.poll_once()
        if self.poll_wait_s > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll_loop, name="model-repository-poll", daemon=True)
            self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_s):
            try:
                self.poll_once()
            except Exception:  # keep serving what is loaded whatever the file system does
                log.exception("model repository poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # --- lookups -----------------------------------------------------------------------------------------
    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            raise ServableError("NOT_FOUND", f"Servable not found for request: Latest({name}); "
                                             f"served models: {sorted(self._models)}")
        return model

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request asks for: a version, a version label, or the newest loaded version."""
        with self._lock:
            model = self._model(name)
            if label:
                if label not in model.config.labels:
                    raise ServableError("NOT_FOUND", f"Unrecognized servable version label: {label} "
                                                     f"(model {name!r} has labels {sorted(model.config.labels)})")
                version = model.config.labels[label]
            if version is None:
                if not model.servables:
                    raise ServableError("NOT_FOUND", f"Servable not found for request: Latest({name}); no version "
                                                     f"is loaded from {model.config.base_path}")
                return model.servables[max(model.servables)]
            if version not in model.servables:
                raise ServableError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version}); "
                                                 f"loaded versions: {sorted(model.servables)}")
            return model.servables[version]

    def status(self, name: str, version: int | None = None) -> list[tuple[int, VersionStatus]]:
        """(version, status) pairs, newest first, as GetModelStatus returns them."""
        with self._lock:
            model = self._models.get(name)
            if model is None or not model.statuses:
                raise ServableError("NOT_FOUND", f"Could not find any versions of model {name}")
            if version is not None:
                if version not in model.statuses:
                    raise ServableError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [(version, model.statuses[version])]
            return sorted(model.statuses.items(), reverse=True)
