"""``empathy serve-models``: our TensorFlow-Serving-compatible model server, with tensorflow_model_server's flags.

    empathy serve-models --port 8500 --rest_api_port 8501 --model_config_file models.config
    empathy serve-models --model_name audio --model_base_path models/audio
    empathy serve-models --models-dir models          # every subdirectory is a model (the default: EMPATHY_MODELS_DIR)
    empathy serve-models --model_name audio --model_base_path s3://empathy/models/audio

Like TensorFlow Serving, base paths may be ``s3://bucket/prefix`` URLs (``--model_base_path``, ``--models-dir``,
a config file's ``base_path``; ``EMPATHY_MODELS_URL`` when no source is given): the store is reached with the
``EMPATHY_S3_*`` settings, mirrored into a local cache (complete versions only, :mod:`serving.model_mirror`)
and polled for new versions as often as the folder is scanned.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from shared.logs import configure_logging
from shared.s3 import ObjectStoreError, is_s3_url
from shared.settings import get_settings

if TYPE_CHECKING:
    from services.model_server.repository import ModelRepository
    from serving.model_mirror import ModelMirror

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empathy serve-models",
        description="Serve versioned SavedModels (<base_path>/<version>/) with TF Serving's gRPC and REST APIs.",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (PredictionService, ModelService)")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port; 0 disables REST")
    parser.add_argument("--host", default="0.0.0.0", help="address both ports bind to")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model_config_file", type=Path,
                        help="TF Serving ModelServerConfig text proto (model_config_list { config { ... } })")
    source.add_argument("--model_base_path", help="serve one model from this directory of versions (or s3:// URL)")
    source.add_argument("--models-dir", "--models_dir", dest="models_dir",
                        help="serve every subdirectory as a model named after it, new ones included "
                             "(default when no source is given: EMPATHY_MODELS_DIR)")
    parser.add_argument("--model_name", default="default", help="name of the --model_base_path model")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="seconds between scans for new/removed versions; <= 0 scans once at start")
    parser.add_argument("--model_cache_dir", type=Path, default=None,
                        help="where s3:// base paths are mirrored (default: a temporary folder, removed at exit)")
    parser.add_argument("--grpc_max_threads", type=int, default=16, help="gRPC worker threads")
    return parser


class S3Sources:
    """The mirrors of the s3:// base paths of one server, into one cache folder (stopped with the server)."""

    def __init__(self, cache_dir: Path | None, poll_s: float) -> None:
        self.owned = cache_dir is None  # our temporary folder: removed at stop
        self.cache = cache_dir if cache_dir is not None else Path(tempfile.mkdtemp(prefix="empathy-models-"))
        self.poll_s = max(poll_s, 2.0) if poll_s > 0 else 0.0  # a listing of the store, not a stat
        self.mirrors: list[ModelMirror] = []

    def local(self, base: str | Path, *, whole: bool = False) -> Path:
        """The local folder to serve for ``base`` (itself unless it is an s3:// URL: then its mirror).
        ``whole``: the URL holds many models (``--models-dir``), else it is one model's versions."""
        from serving.model_mirror import ModelLocation, ModelMirror, split_model_url

        url = str(base)
        if url.startswith("s3:/") and not url.startswith("s3://"):  # what Path() made of "s3://..."
            url = "s3://" + url[len("s3:/"):]
        if not is_s3_url(url):
            return Path(base)
        parent, only = (url, None) if whole else split_model_url(url)
        mirror = ModelMirror(ModelLocation.from_url(parent, get_settings()), self.cache, poll_s=self.poll_s, only=only)
        mirror.start()
        self.mirrors.append(mirror)
        return self.cache if whole else self.cache / (only or "")

    def stop(self) -> None:
        for mirror in self.mirrors:
            mirror.stop()
        if self.owned:
            shutil.rmtree(self.cache, ignore_errors=True)


def build_repository(args: argparse.Namespace, sources: S3Sources | None = None) -> ModelRepository:
    """The repository the flags describe; ValueError for an unusable model config.

    Imported lazily so that ``--help`` and flag errors answer without loading TensorFlow.
    """
    from dataclasses import replace

    from services.model_server.repository import (
        ModelConfig,
        ModelRepository,
        parse_model_config_file,
    )

    poll = args.file_system_poll_wait_seconds
    sources = sources or S3Sources(getattr(args, "model_cache_dir", None), poll)
    if args.model_config_file is not None:
        configs = parse_model_config_file(args.model_config_file)
        return ModelRepository([replace(c, base_path=sources.local(c.base_path)) for c in configs], poll_wait_s=poll)
    if args.model_base_path is not None:
        return ModelRepository([ModelConfig(name=args.model_name, base_path=sources.local(args.model_base_path))],
                               poll_wait_s=poll)
    settings = get_settings()
    models_dir = args.models_dir if args.models_dir is not None else (settings.models_url or settings.models_dir)
    return ModelRepository(models_root=sources.local(models_dir, whole=True), poll_wait_s=poll)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    from services.model_server.server import ModelServer

    sources = S3Sources(args.model_cache_dir, args.file_system_poll_wait_seconds)
    try:
        repository = build_repository(args, sources)
    except (ValueError, OSError, ObjectStoreError) as exc:
        log.error("invalid model configuration", extra={"error": str(exc)})
        sources.stop()
        return 2
    server = ModelServer(repository, grpc_port=args.port, rest_port=args.rest_api_port, host=args.host,
                         grpc_max_threads=args.grpc_max_threads)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        server.start()
    except OSError as exc:
        log.error("cannot start the model server", extra={"error": str(exc)})
        server.stop()
        sources.stop()
        return 1
    stopping.wait()
    log.info("shutting down")
    server.stop()
    sources.stop()
    return 0
