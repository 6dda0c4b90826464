"""The gateway as ``empathy up`` serves it (gunicorn with ``gateway.server``), attacked on loopback.

* decompression bombs (a 16000x16000 PNG named ``.mp4``, a 16000x16000 H.264 MP4), several at once: refused
  from their headers, the gateway's resident memory (its worker's ``VmHWM``) barely moves;
* 50 clients that declare a large upload and trickle it (with and without a key), and clients that trickle
  their headers, while ``/healthz`` and an honest upload must still answer promptly, and every trickler is
  cut off within seconds;
* gunicorn's own refusals (414 request line too long, 431 too many / too large header fields) answer JSON.
"""

from __future__ import annotations

import http.client
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import redis

from bench.procstat import descendants
from cli.up import Launcher, build_parser
from shared.ports import free_port
from tests.bombs import write_h264_bomb, write_png_bomb
from tests.ensemble_support import API_TOKENS, api_keys_env, redis_db, wait_for, write_tiny_video

KEYED, KEYLESS, HEADERS = 25, 13, 12  # 50 slow clients: bodies with and without a key, headers


class Gateway(NamedTuple):
    url: str
    pid: int  # gunicorn's master


@pytest.fixture
def gateway(redis_url: str, tmp_path: Path) -> Iterator[Gateway]:
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
        yield Gateway(base, launcher.children[-1].process.pid)
    finally:
        launcher.stop(grace_s=5)


@pytest.fixture
def gateway_url(gateway: Gateway) -> str:
    return gateway.url


def _upload(base: str, data: bytes, filename: str, timeout: float = 60.0) -> tuple[int, dict]:
    """POST /v1/jobs with alice's key and ``data`` as the video: (status, JSON answer)."""
    boundary = "upload-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{filename}\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection(*_address(base), timeout=timeout)
    try:
        connection.request("POST", "/v1/jobs", body=body,
                           headers={"Authorization": f"Bearer {API_TOKENS['alice']}",
                                    "Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


BOMBS_AT_ONCE = 3  # of each kind
MAX_GROWTH_MIB = 50


@pytest.mark.slow
def test_decompression_bombs_are_refused_from_their_headers(gateway: Gateway, tmp_path: Path) -> None:
    """Before: the gateway decoded each bomb to learn its size (+740 MB per PNG, 8 s; +580 MB per H.264)."""
    png = write_png_bomb(tmp_path / "bomb.png").read_bytes()
    h264 = write_h264_bomb(tmp_path / "bomb.mp4").read_bytes()
    assert _upload(gateway.url, write_tiny_video(tmp_path / "clip.mp4").read_bytes(), "clip.mp4")[0] == 202
    (worker,) = descendants(gateway.pid)  # one gunicorn worker serves every request
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak from here on
    before_kib = _memory_kib(worker, "VmRSS")

    def send(kind: str) -> tuple[str, int, str, float]:
        started = time.monotonic()
        status, answer = _upload(gateway.url, png if kind == "png" else h264, "bomb.mp4")
        return kind, status, answer.get("error", ""), time.monotonic() - started

    with ThreadPoolExecutor(2 * BOMBS_AT_ONCE) as pool:
        answers = list(pool.map(send, ["png", "h264"] * BOMBS_AT_ONCE))
    growth_mib = (_memory_kib(worker, "VmHWM") - before_kib) / 1024
    slowest = max(seconds for *_, seconds in answers)
    print(f"{2 * BOMBS_AT_ONCE} bombs at once: answered within {slowest:.2f} s, gateway peak RSS "
          f"+{growth_mib:.1f} MiB over {before_kib / 1024:.0f} MiB")
    for kind, status, error, _ in answers:
        if kind == "png":
            assert status == 415 and "still image (PNG 16000x16000)" in error, (status, error)
        else:
            assert status == 413 and "16000x16000" in error and "EMPATHY_MAX_FRAME_SIZE" in error, (status, error)
    assert growth_mib <= MAX_GROWTH_MIB


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


IDLE_CONNECTIONS = 1000


def _healthz_ms(base: str) -> float:
    started = time.monotonic()
    assert _status(base, "/healthz", timeout=10) == 200
    return (time.monotonic() - started) * 1000


@pytest.mark.slow
def test_idle_connections_cost_nothing_and_refusals_close_at_once(gateway_url: str) -> None:
    """1000 connections that send nothing or half a request line: /healthz still answers within 100 ms, and a
    request refused before its body (no key, 1 GB declared) is answered and closed at once.

    Before (gunicorn threads): each such connection held one of 64 threads until its 10 s header deadline;
    /healthz waited behind them for seconds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE_CONNECTIONS + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    idle: list[socket.socket] = []
    try:
        for i in range(IDLE_CONNECTIONS):
            sock = socket.create_connection(_address(gateway_url), timeout=5)
            if i % 2:
                sock.sendall(b"GET /heal")  # half a request line, never finished
            idle.append(sock)
        time.sleep(0.5)
        # connections are accepted in order: once this one is answered, the 1000 before it are open (on a
        # busy machine this first answer also waits for those accepts: 196 ms once, at a load of 12 on 2 cores)
        _healthz_ms(gateway_url)
        latencies = [_healthz_ms(gateway_url) for _ in range(5)]

        started = time.monotonic()
        with socket.create_connection(_address(gateway_url), timeout=10) as sock:
            sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
                         b"Content-Length: 1000000000\r\n\r\n--zz\r\n")
            received = b""
            while chunk := sock.recv(65536):  # until the gateway closes the connection
                received += chunk
        refused_s = time.monotonic() - started
    finally:
        for sock in idle:
            sock.close()
    print(f"{IDLE_CONNECTIONS} idle connections: /healthz {min(latencies):.0f}-{max(latencies):.0f} ms; "
          f"a request without a key answered {received.split(b' ', 2)[1].decode()} and closed in {refused_s:.3f} s")
    assert received.startswith(b"HTTP/1.1 401")
    assert max(latencies) < 100, latencies
    assert refused_s < 1.0


ROUND = 15  # honest uploads per round (twice: under EMPATHY_KEY_ACTIVE_JOBS)


@pytest.mark.slow
def test_memory_after_load_is_warm_up_not_a_leak(gateway: Gateway, tmp_path: Path) -> None:
    """The gateway's resident memory grows with its first requests (libraries and code paths loaded, allocator
    pools filled) and then stays put: a second round of the same load adds next to nothing."""
    (worker,) = descendants(gateway.pid)
    clip = write_tiny_video(tmp_path / "clip.mp4").read_bytes()
    start = _memory_kib(worker, "VmRSS") / 1024
    rounds = []
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(lambda _: _upload(gateway.url, clip, "clip.mp4")[0], range(ROUND))) == {202}
        rounds.append(_memory_kib(worker, "VmRSS") / 1024)
    print(f"gateway RSS: {start:.0f} MiB at start, {rounds[0]:.0f} MiB after {ROUND} uploads, "
          f"{rounds[1]:.0f} MiB after {ROUND} more")
    assert rounds[1] - rounds[0] <= 5.0


FILE_FLOODS = 24  # connections at once, each sending 999 one-byte file parts


def _open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.mark.slow
def test_many_file_parts_are_413_and_hold_few_descriptors(gateway: Gateway, tmp_path: Path) -> None:
    """Before: 24 such requests pushed the gateway to 19 986 of 20 000 file descriptors and 19 931 temporary
    files, and they got 500 (OSError: Too many open files)."""
    (worker,) = descendants(gateway.pid)
    parts = b"".join(b"--flood\r\nContent-Disposition: form-data; name=\"video\"; filename=\"f%d\"\r\n\r\nx\r\n" % i
                     for i in range(999)) + b"--flood--\r\n"
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKENS['alice']}\r\n"
            f"Content-Type: multipart/form-data; boundary=flood\r\nContent-Length: {len(parts)}\r\n\r\n").encode()
    baseline = _open_files(worker)
    peak = baseline
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _open_files(worker))
            time.sleep(0.005)

    def flood(_: int) -> int:
        try:
            status, _, _ = _raw(gateway.url, head + parts)
        except OSError:
            return 0
        return status

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(FILE_FLOODS) as pool:
        statuses = list(pool.map(flood, range(FILE_FLOODS)))
    stop.set()
    watcher.join()
    uploads = tmp_path / "storage" / "uploads"
    left = list(uploads.iterdir()) if uploads.exists() else []
    print(f"{FILE_FLOODS} requests of 999 file parts: statuses {sorted(set(statuses))}, gateway file descriptors "
          f"{baseline} -> peak {peak}, temporary files left {len(left)}")
    assert set(statuses) == {413}, statuses
    assert peak - baseline <= FILE_FLOODS * 3, (baseline, peak)  # the socket and at most 2 files each
    assert left == []


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
