"""How gunicorn serves the gateway: ``gunicorn --config python:gateway.server 'gateway.app:create_app()'``.

Three things gunicorn's defaults do not do, and why they matter for an API that takes 1 GiB uploads from
the network:

* **Waiting connections cost nothing.** The worker is event-driven (gevent, :class:`GatewayWorker`): a
  connection waiting for its client (idle, trickling its headers or its body) is a parked greenlet and a
  socket, not a thread. With one thread per connection, 150 slow or idle connections held every thread
  and ``/healthz`` stopped answering; now 1000 idle connections leave it answering in milliseconds. Up to
  ``EMPATHY_GATEWAY_CONNECTIONS`` connections are served at once (more wait in the listen backlog), and the
  worker raises its open-file limit to fit them.
* **Slow clients are still cut off**, so that connections and temporary files are released: the request
  line and headers must arrive within ``EMPATHY_REQUEST_HEADER_TIMEOUT_S``, no read waits longer than
  ``EMPATHY_UPLOAD_IDLE_TIMEOUT_S``, and once the application starts reading a body (:func:`begin_body`)
  it must keep an average of ``EMPATHY_UPLOAD_MIN_RATE_KIB_S`` after the same idle grace. A client that
  falls behind is cut off (the application answers 408). A refused request (401, 413, 429 ...) is answered
  with ``Connection: close`` and closed at once, its body unread.
* **Errors speak JSON.** Errors gunicorn answers itself before the application sees the request (414 URI
  too long, 431 header fields too large, 400 malformed request line) are written as ``{"error": ...}``
  like every answer of the API, not as gunicorn's HTML page.

Work that would hold the event loop (probing a video, hashing an upload, parsing a transcript, asking the
model servers over gRPC) runs in native threads through :func:`offload`, so one request never stalls the
others.
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
from gevent import monkey
from gevent import socket as gsocket
from gevent.threadpool import ThreadPoolExecutor as NativeThreadPoolExecutor
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from shared.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
FDS_PER_CONNECTION = 3  # the client socket and at most two uploaded files (video, transcript: gateway.uploads)
FDS_SPARE = 128  # Redis and broker connections, logs, libraries


class ReadDeadlineError(ConnectionResetError):
    """A client sent its request too slowly; the connection is dropped (gunicorn treats it as a reset)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ECONNRESET, message)


class DeadlineSocket(gsocket.socket):
    """A client connection whose reads are bounded in time (see the module docstring).

    gunicorn makes the socket "blocking" while it serves it; "blocking" here means "with a timeout of
    ``idle_s``" (gevent waits for the socket in its event loop, other connections go on meanwhile).
    """

    idle_s: float = 10.0
    body_started: float | None = None
    body_bytes: int = 0
    min_rate: float = 0.0  # bytes/s

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.idle_s)
        else:
            super().setblocking(False)

    def begin_body(self, min_rate_bytes_s: float) -> None:
        self.body_started, self.body_bytes, self.min_rate = time.monotonic(), 0, min_rate_bytes_s

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self.body_started is not None and self.min_rate > 0:
            late = time.monotonic() - self.body_started - self.idle_s  # the grace: one idle period
            if late > 0 and self.body_bytes < self.min_rate * late:
                raise ReadDeadlineError(f"request body arriving slower than {self.min_rate / 1024:g} KiB/s")
        try:
            data = super().recv(size, flags)
        except TimeoutError:
            raise ReadDeadlineError(f"no request data for {self.idle_s:g} s") from None
        self.body_bytes += len(data)
        return data


def begin_body(environ: dict[str, Any]) -> None:
    """Called by the application before it reads a request body: from now on the body-rate rule applies."""
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, DeadlineSocket):
        sock.begin_body(get_settings().upload_min_rate_kib_s * 1024)


def _write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answers (414, 431, 400 ...), as the API's JSON instead of an HTML page."""
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def offload(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking call (CPU work, file reads, C libraries) in a native thread when serving under gevent,
    so that the event loop goes on serving other connections; a plain call otherwise (tests, tools)."""
    if not monkey.is_module_patched("socket"):
        return function(*args)
    ok, value = gevent.get_hub().threadpool.apply(_outcome, (function, args))
    if not ok:
        raise value  # here, in the request's greenlet (gevent's pool would print it as a crash)
    return value


def _outcome(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    try:
        return True, function(*args)
    except Exception as exc:  # handed back to the caller of offload(), which raises it
        return False, exc


def native_thread_pool(max_workers: int) -> Any:
    """A ``concurrent.futures`` executor of native threads (gevent's under gevent, where ``threading`` is
    patched and a blocking gRPC call in a greenlet would stall every connection)."""
    if monkey.is_module_patched("threading"):
        return NativeThreadPoolExecutor(max_workers=max_workers)
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=max_workers)


def raise_open_file_limit(connections: int) -> int:
    """Raise this process's soft open-file limit to fit ``connections``; the connections that fit."""
    needed = connections * FDS_PER_CONNECTION + FDS_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        fitting = max(1, (soft - FDS_SPARE) // FDS_PER_CONNECTION)
        log.warning("open-file limit too low for EMPATHY_GATEWAY_CONNECTIONS; serving fewer at once",
                    extra={"limit": soft, "connections": connections, "serving": fitting})
        return fitting
    return connections


class GatewayWorker(GeventWorker):
    """gunicorn's gevent worker with deadline-bounded client sockets, a header deadline and JSON error pages."""

    def init_process(self) -> None:
        util.write_error = _write_json_error  # this process serves only the API: every error page is JSON
        settings = get_settings()
        self.header_timeout_s = settings.request_header_timeout_s
        self.idle_s = settings.upload_idle_timeout_s
        self.worker_connections = raise_open_file_limit(settings.gateway_connections)
        super().init_process()

    def load_wsgi(self) -> None:
        """The application, wrapped so that its ``Connection: close`` closes the connection at once.

        gunicorn drops hop-by-hop headers an application sets and keeps the connection alive, reading (and
        discarding) the rest of a refused upload first: a 401 to a client declaring 1 GB held its connection
        until the read deadline cut it off. Answers that leave a body unread say ``Connection: close``
        (``gateway.app``), and here that closes the connection once the answer is written.
        """
        super().load_wsgi()
        application = self.wsgi

        def closing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                    start_response.__self__.force_close()  # gunicorn's Response behind its start_response
                return start_response(status, headers, exc_info)

            return application(environ, start)

        self.wsgi = closing

    def timeout_ctx(self) -> gevent.Timeout:
        """Bounds the wait for each request's line and headers (the first and every kept-alive one): when it
        passes, the connection is closed without an answer."""
        return gevent.Timeout(self.header_timeout_s, False)

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        sock = DeadlineSocket(client.family, client.type, client.proto, fileno=client.detach())
        sock.idle_s = self.idle_s
        super().handle(listener, sock, addr)


# --- gunicorn settings (read by `--config python:gateway.server`) -------------------------------------------
worker_class = "gateway.server.GatewayWorker"
workers = 1
worker_connections = get_settings().gateway_connections
timeout = 300  # the worker's heartbeat, not a request limit: request reads have the deadlines above
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190  # longer: 414 (JSON)
limit_request_fields = 100  # more header fields: 431 (JSON)
limit_request_field_size = 8190  # a longer header field: 431 (JSON)
