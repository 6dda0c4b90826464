"""The model server process: one repository, served over gRPC and REST at the same time.

Kept apart from the CLI so tests and ``empathy up`` can run a server in-process on free ports.
"""

from __future__ import annotations

import logging
import threading

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from services.model_server.grpc_service import create_grpc_server
from services.model_server.repository import ModelRepository
from services.model_server.rest_app import create_app

log = logging.getLogger(__name__)


class _QuietRequestHandler(WSGIRequestHandler):
    """No access-log line per REST request (werkzeug's default would print every one to stderr)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ModelServer:
    """gRPC (``grpc_port``) and REST (``rest_port``; 0 = no REST, as TF Serving) over one repository.

    Ports given as ``None`` are picked by the OS; the bound ports are on the instance after :meth:`start`.
    """

    def __init__(self, repository: ModelRepository, *, grpc_port: int | None = 8500, rest_port: int | None = 8501,
                 host: str = "0.0.0.0", grpc_max_threads: int = 16) -> None:
        self.repository = repository
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.grpc_max_threads = grpc_max_threads
        self._grpc = None
        self._http: BaseWSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> ModelServer:
        """Load the models present now (like TF Serving, before answering), then open both ports."""
        self.repository.start()
        self._grpc, self.grpc_port = create_grpc_server(self.repository, self.grpc_port or 0, host=self.host,
                                                        max_workers=self.grpc_max_threads)
        self._grpc.start()
        log.info("Running gRPC ModelServer", extra={"address": f"{self.host}:{self.grpc_port}",
                                                    "models": self.repository.model_names()})
        if self.rest_port != 0:
            self._http = make_server(self.host, self.rest_port or 0, create_app(self.repository), threaded=True,
                                     request_handler=_QuietRequestHandler)
            self.rest_port = self._http.server_port
            self._http_thread = threading.Thread(target=self._http.serve_forever, name="rest-api", daemon=True)
            self._http_thread.start()
            log.info("Exporting HTTP/REST API", extra={"address": f"{self.host}:{self.rest_port}"})
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop accepting requests, let in-flight ones finish for ``grace_s``, stop polling."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait()
            self._grpc = None
        self.repository.stop()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
