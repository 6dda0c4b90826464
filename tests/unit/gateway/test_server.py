"""The gateway as ``empathy up`` serves it (gunicorn with ``gateway.server``), attacked on loopback.

* 50 clients that declare a large upload and trickle it (with and without a key), and clients that trickle
  their headers, while ``/healthz`` and an honest upload must still answer promptly, and every trickler is
  cut off within seconds;
* gunicorn's own refusals (414 request line too long, 431 too many / too large header fields) answer JSON.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.up import Launcher, build_parser
from shared.ports import free_port
from tests.ensemble_support import API_TOKENS, api_keys_env, redis_db, wait_for, write_tiny_video

KEYED, KEYLESS, HEADERS = 25, 13, 12  # 50 slow clients: bodies with and without a key, headers


@pytest.fixture
def gateway_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    url = redis_db(redis_url, 7)
    redis.Redis.from_url(url).flushdb()
    port = free_port()
    args = build_parser().parse_args(["--port", str(port), "--storage-dir", str(tmp_path / "storage"),
                                      "--models-dir", str(tmp_path / "models")])
    launcher = Launcher(args)
    launcher.env["EMPATHY_REDIS_URL"] = url
    launcher.key_env = api_keys_env()
    base = launcher.start_gateway()
    try:
        wait_for(lambda: _status(base, "/healthz") == 200, timeout=60, interval=0.2, what="the gateway answering")
        yield base
    finally:
        launcher.stop(grace_s=5)


def _status(base: str, path: str, timeout: float = 5.0) -> int:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def _raw(base: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read the answer: (status, headers, body)."""
    with socket.create_connection(_address(base), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


class Trickler(threading.Thread):
    """A client that declares a big upload (or sends its headers) and then sends one byte every 0.5 s."""

    def __init__(self, base: str, *, key: bool, headers_only: bool = False) -> None:
        super().__init__(daemon=True)
        self.base, self.key, self.headers_only = base, key, headers_only
        self.outcome = "running"
        self.cut_after_s: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        head = ("POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
                + (f"Authorization: Bearer {API_TOKENS['alice']}\r\n" if self.key else "")
                + "Content-Type: multipart/form-data; boundary=zzz\r\nContent-Length: 500000000\r\n\r\n").encode()
        try:
            with socket.create_connection(_address(self.base), timeout=60) as sock:
                if self.headers_only:
                    payload = head
                else:
                    sock.sendall(head)
                    payload = b"--zzz\r\n" + b"x" * 1000
                for i in range(len(payload)):
                    sock.sendall(payload[i:i + 1])
                    sock.settimeout(0.5)
                    try:
                        answer = sock.recv(4096)
                    except TimeoutError:
                        continue
                    self.outcome = answer.split(b"\r\n", 1)[0].decode() if answer else "closed"
                    break
                else:
                    self.outcome = "never cut off"
        except OSError as exc:
            self.outcome = f"closed ({type(exc).__name__})"
        self.cut_after_s = time.monotonic() - started


@pytest.mark.slow
def test_slow_clients_do_not_starve_the_gateway(gateway_url: str, tmp_path: Path) -> None:
    tricklers = ([Trickler(gateway_url, key=True) for _ in range(KEYED)]
                 + [Trickler(gateway_url, key=False) for _ in range(KEYLESS)]
                 + [Trickler(gateway_url, key=True, headers_only=True) for _ in range(HEADERS)])
    for trickler in tricklers:
        trickler.start()
    time.sleep(2.0)  # every trickler connected and holding its request open

    latencies = []
    for _ in range(5):
        started = time.monotonic()
        assert _status(gateway_url, "/healthz", timeout=5) == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.5)
    assert max(latencies) < 1.0, latencies

    video = write_tiny_video(tmp_path / "clip.mp4")
    boundary = "honest"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"clip.mp4\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + video.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    host, port = _address(gateway_url)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    started = time.monotonic()
    connection.request("POST", "/v1/jobs", body=body,
                       headers={"Authorization": f"Bearer {API_TOKENS['alice']}",
                                "Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = connection.getresponse()
    assert response.status == 202, response.read()
    upload_s = time.monotonic() - started
    assert upload_s < 5.0

    for trickler in tricklers:
        trickler.join(timeout=60)
    outcomes = [t.outcome for t in tricklers]
    cut = sorted(t.cut_after_s for t in tricklers)
    print(f"{len(tricklers)} slow clients: /healthz {min(latencies) * 1000:.0f}-{max(latencies) * 1000:.0f} ms, "
          f"honest upload {upload_s:.2f} s, tricklers cut off after {cut[0]:.1f}-{cut[-1]:.1f} s")
    assert "never cut off" not in outcomes and "running" not in outcomes, outcomes
    assert cut[-1] < 40, cut
    assert all(t.outcome.startswith("HTTP/1.1 401") for t in tricklers[KEYED:KEYED + KEYLESS]), outcomes
    assert all(t.outcome.startswith("HTTP/1.1 408") for t in tricklers[:KEYED]), outcomes
    assert all(t.cut_after_s >= 9 for t in tricklers[KEYED + KEYLESS:]), cut  # headers: the header deadline


def test_gunicorn_refusals_answer_json(gateway_url: str) -> None:
    status, headers, body = _raw(gateway_url, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and headers["content-type"] == "application/json"
    assert "error" in json.loads(body)
    many = "".join(f"X-Field-{i}: {i}\r\n" for i in range(120))
    status, headers, body = _raw(gateway_url, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
    assert status == 431 and headers["content-type"] == "application/json" and "error" in json.loads(body)
    status, headers, body = _raw(gateway_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000
                                 + b"\r\n\r\n")
    assert status == 431 and "error" in json.loads(body)
    status, headers, body = _raw(gateway_url, b"GET /no/such/route HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 404 and "error" in json.loads(body)
