"""``empathy serve-models``: our TensorFlow-Serving-compatible model server, with tensorflow_model_server's flags.

    empathy serve-models --port 8500 --rest_api_port 8501 --model_config_file models.config
    empathy serve-models --model_name audio --model_base_path models/audio
    empathy serve-models --models-dir models          # every subdirectory is a model (the default: EMPATHY_MODELS_DIR)
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from shared.logs import configure_logging
from shared.settings import get_settings

if TYPE_CHECKING:
    from services.model_server.repository import ModelRepository

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
    source.add_argument("--model_base_path", type=Path, help="serve one model from this directory of versions")
    source.add_argument("--models-dir", "--models_dir", dest="models_dir", type=Path,
                        help="serve every subdirectory as a model named after it, new ones included "
                             "(default when no source is given: EMPATHY_MODELS_DIR)")
    parser.add_argument("--model_name", default="default", help="name of the --model_base_path model")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="seconds between scans for new/removed versions; <= 0 scans once at start")
    parser.add_argument("--grpc_max_threads", type=int, default=16, help="gRPC worker threads")
    return parser


def build_repository(args: argparse.Namespace) -> ModelRepository:
    """The repository the flags describe; ValueError for an unusable model config.

    Imported lazily so that ``--help`` and flag errors answer without loading TensorFlow.
    """
    from services.model_server.repository import (
        ModelConfig,
        ModelRepository,
        parse_model_config_file,
    )

    poll = args.file_system_poll_wait_seconds
    if args.model_config_file is not None:
        return ModelRepository(parse_model_config_file(args.model_config_file), poll_wait_s=poll)
    if args.model_base_path is not None:
        return ModelRepository([ModelConfig(name=args.model_name, base_path=args.model_base_path)], poll_wait_s=poll)
    models_dir = args.models_dir if args.models_dir is not None else get_settings().models_dir
    return ModelRepository(models_root=models_dir, poll_wait_s=poll)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    from services.model_server.server import ModelServer

    try:
        repository = build_repository(args)
    except (ValueError, OSError) as exc:
        log.error("invalid model configuration", extra={"error": str(exc)})
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
        return 1
    stopping.wait()
    log.info("shutting down")
    server.stop()
    return 0
