"""How gunicorn serves the gateway: ``gunicorn --config python:gateway.server 'gateway.app:create_app()'``.

Two things gunicorn does not do on its own, and why they matter for an API that takes 1 GiB uploads from
the network:

* **Slow clients must not hold the threads.** A threaded worker gives a thread to each connection while
  it reads the request; eight clients that declare a large body and trickle it held all eight threads and
  ``/healthz`` stopped answering. Here every client socket is a :class:`DeadlineSocket`: the request line
  and headers must arrive within ``EMPATHY_REQUEST_HEADER_TIMEOUT_S``, no read waits longer than
  ``EMPATHY_UPLOAD_IDLE_TIMEOUT_S``, and once the application starts reading a body
  (:func:`begin_body`) it must keep an average of ``EMPATHY_UPLOAD_MIN_RATE_KIB_S`` after the same idle
  grace. A client that falls behind is cut off (the application answers 408), so a thread is never held
  by one client for more than seconds, and ``EMPATHY_GATEWAY_THREADS`` threads (cheap: they wait on
  sockets) leave room for probes and honest uploads while dozens of slow clients are being cut off.
* **Errors speak JSON.** Errors gunicorn answers itself before the application sees the request (414 URI
  too long, 431 header fields too large, 400 malformed request line) are written as ``{"error": ...}``
  like every answer of the API, not as gunicorn's HTML page.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from shared.settings import get_settings


class ReadDeadlineError(ConnectionResetError):
    """A client sent its request too slowly; the connection is dropped (gunicorn treats it as a reset)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ECONNRESET, message)


class DeadlineSocket(socket.socket):
    """A client connection whose blocking reads are bounded in time (see the module docstring).

    gunicorn switches the socket between blocking (while a thread reads or writes) and non-blocking (while
    the poller watches a kept-alive connection); "blocking" here means "with a timeout of ``idle_s``".
    """

    idle_s: float = 10.0
    header_deadline: float | None = None
    body_started: float | None = None
    body_bytes: int = 0
    min_rate: float = 0.0  # bytes/s

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.idle_s)
        else:
            super().setblocking(False)

    def begin_request(self, header_timeout_s: float) -> None:
        self.header_deadline = time.monotonic() + header_timeout_s
        self.body_started = None

    def begin_body(self, min_rate_bytes_s: float) -> None:
        self.header_deadline = None
        self.body_started, self.body_bytes, self.min_rate = time.monotonic(), 0, min_rate_bytes_s

    def recv(self, size: int, flags: int = 0) -> bytes:
        now = time.monotonic()
        if self.gettimeout():  # blocking use (a timeout, not 0.0 = non-blocking): bound this read
            timeout = self.idle_s
            if self.header_deadline is not None:
                timeout = self.header_deadline - now
                if timeout <= 0:
                    raise ReadDeadlineError("request headers not received in time")
            self.settimeout(min(self.idle_s, timeout))
        if self.body_started is not None and self.min_rate > 0:
            late = now - self.body_started - self.idle_s  # the grace: one idle period
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


class GatewayWorker(ThreadWorker):
    """gunicorn's threaded worker with deadline-bounded client sockets and JSON error pages."""

    def init_process(self) -> None:
        util.write_error = _write_json_error  # this process serves only the API: every error page is JSON
        settings = get_settings()
        self.header_timeout_s = settings.request_header_timeout_s
        self.idle_s = settings.upload_idle_timeout_s
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError:
            return  # another thread's or a reset connection: the poller calls again
        sock = DeadlineSocket(client.family, client.type, client.proto, fileno=client.detach())
        sock.idle_s = self.idle_s
        sock.setblocking(True)
        self.nr_conns += 1
        from gunicorn.workers.gthread import TConn

        self.enqueue_req(TConn(self.cfg, sock, address, listener.getsockname()))

    def handle(self, conn: Any) -> Any:
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.begin_request(self.header_timeout_s)
        return super().handle(conn)


# --- gunicorn settings (read by `--config python:gateway.server`) -------------------------------------------
worker_class = "gateway.server.GatewayWorker"
workers = 1
threads = get_settings().gateway_threads
timeout = 300  # the worker's heartbeat, not a request limit: request reads have the deadlines above
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190  # longer: 414 (JSON)
limit_request_fields = 100  # more header fields: 431 (JSON)
limit_request_field_size = 8190  # a longer header field: 431 (JSON)
