"""``empathy up``: the whole ensemble as local processes, for machines without Docker.

It starts what ``docker-compose.yml`` starts, with the same environment variables:

* a ``redis-server`` of its own (AOF persistence under ``<storage>/redis``), unless ``--redis-url`` or
  ``EMPATHY_REDIS_URL`` names one;
* one ``empathy serve-models`` per modality (our TF-Serving-compatible server; gRPC on ``--base-port``
  + 2 i, REST on the next port), or a single one serving every model with ``--one-model-server``;
* the five modality workers and the fusion worker (``python -m services.<name>``), with
  ``--workers landmarks=3,face=2`` to run several workers on a queue (as ``--scale`` does);
* the gateway under gunicorn.

Children run in their own sessions, so Ctrl-C reaches only the launcher, which then stops them in
order (gateway, workers, model servers, Redis): SIGTERM first, SIGKILL after a grace period.
A worker that dies on its own is started again (as compose's ``restart: unless-stopped`` does; its
unfinished task is delivered again after ``EMPATHY_TASK_VISIBILITY_TIMEOUT_S``), at most
``MAX_WORKER_RESTARTS`` times; any other process dying stops the ensemble with a non-zero exit.

API keys: unless ``EMPATHY_API_KEYS``/``EMPATHY_API_KEYS_FILE`` name some (or ``EMPATHY_AUTH=off``), a
key is generated for this run and printed once with the ready line; only the gateway gets the keys.

What survives a restart of ``empathy up`` with the same ``--storage-dir``: its Redis appends every write to
``<storage>/redis/appendonly.aof`` (fsync every second), so accepted jobs, their queued tasks and their
states come back, and the videos and results stay in ``<storage>/jobs``; workers take the queued tasks up
again. Ctrl-C lets running analyses finish (up to the 30 s grace); one cut short is delivered again after
the visibility timeout. With ``--redis-url`` that Redis's own persistence applies.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from shared.logs import configure_logging
from shared.model_store import list_versions
from shared.settings import MODALITIES, PREFIX, get_settings

log = logging.getLogger(__name__)

WORKER_QUEUES = (*MODALITIES, "fusion")
WORKER_GROUP = 1
MAX_WORKER_RESTARTS = 5
KEY_VARIABLES = (f"{PREFIX}API_KEYS", f"{PREFIX}API_KEYS_FILE")  # secrets: the gateway's environment only


@dataclass
class Child:
    name: str
    group: int  # stop order: lower first
    process: subprocess.Popen
    argv: list[str]
    env: dict[str, str]
    restarts: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_workers(spec: str) -> dict[str, int]:
    """``landmarks=3,face=2`` -> {"landmarks": 3, "face": 2}; every other queue gets 1 worker."""
    counts = dict.fromkeys(WORKER_QUEUES, 1)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in counts or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"bad --workers entry {part!r}: expected <queue>=<n>, queue in "
                                             f"{', '.join(WORKER_QUEUES)}, n >= 1")
        counts[name] = int(value)
    return counts


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="empathy up", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address the gateway listens on")
    parser.add_argument("--port", type=int, default=8080, help="gateway port")
    parser.add_argument("--redis-url", default=os.environ.get(f"{PREFIX}REDIS_URL"),
                        help="use this Redis instead of starting one (default: EMPATHY_REDIS_URL if set)")
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir)
    parser.add_argument("--storage-dir", type=Path, default=settings.storage_dir)
    parser.add_argument("--base-port", type=int, default=8500,
                        help="first model-server port (gRPC; REST on the next); 0 = pick free ports")
    parser.add_argument("--one-model-server", action="store_true", help="one model server for all five models")
    parser.add_argument("--workers", type=parse_workers, default=parse_workers(""),
                        help="workers per queue, e.g. landmarks=3,face=2 (default 1 each)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for /readyz")
    return parser


class Launcher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.children: list[Child] = []
        self.stopping = False
        self.env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
        self.env.update({f"{PREFIX}MODELS_DIR": str(args.models_dir.resolve()),
                         f"{PREFIX}STORAGE_DIR": str(args.storage_dir.resolve()),
                         "PYTHONUNBUFFERED": "1"})
        self.key_env = {k: os.environ[k] for k in KEY_VARIABLES if os.environ.get(k)}

    def spawn(self, name: str, group: int, argv: list[str], env: dict[str, str] | None = None) -> Child:
        env = env or self.env
        process = subprocess.Popen(argv, env=env, start_new_session=True)
        child = Child(name, group, process, argv, env)
        self.children.append(child)
        log.info("started", extra={"process": name, "pid": process.pid, "argv": " ".join(argv)})
        return child

    def generate_key(self) -> str | None:
        """A key for this run when authentication is on and none is configured (printed once, never logged)."""
        if not get_settings().auth or self.key_env:
            return None
        token = secrets.token_urlsafe(32)
        self.key_env = {f"{PREFIX}API_KEYS": f"local:{token}"}
        return token

    def restart(self, child: Child) -> bool:
        """Start a dead worker again; False when it is not a worker or keeps dying."""
        if child.group != WORKER_GROUP or child.restarts >= MAX_WORKER_RESTARTS:
            return False
        log.warning("worker exited; starting it again", extra={"process": child.name, "pid": child.process.pid,
                                                               "returncode": child.process.returncode,
                                                               "restarts": child.restarts + 1})
        child.process = subprocess.Popen(child.argv, env=child.env, start_new_session=True)
        child.restarts += 1
        return True

    def _port(self, preferred: int) -> int:
        return preferred if preferred else free_port()

    def start_redis(self) -> None:
        if self.args.redis_url:
            self.env[f"{PREFIX}REDIS_URL"] = self.args.redis_url
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("empathy up: redis-server is not installed (apt-get install redis-server) "
                             "and no --redis-url was given")
        port = free_port()
        workdir = (self.args.storage_dir / "redis").resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        self.spawn("redis", 3, [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                                "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
        self.env[f"{PREFIX}REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        wait_port("127.0.0.1", port, timeout=20)

    def start_model_servers(self) -> None:
        cli = [sys.executable, "-m", "shared.cli", "serve-models", "--host", "127.0.0.1"]
        base = self.args.base_port
        if self.args.one_model_server:
            grpc_port, rest_port = self._port(base), self._port(base + 1 if base else 0)
            self.spawn("model-server", 2, [*cli, "--models-dir", str(self.args.models_dir.resolve()),
                                           "--port", str(grpc_port), "--rest_api_port", str(rest_port)])
            for name in MODALITIES:
                self.env[f"{PREFIX}{name.upper()}_MODEL_SERVER"] = f"127.0.0.1:{grpc_port}"
            return
        for i, name in enumerate(MODALITIES):
            grpc_port = self._port(base + 2 * i if base else 0)
            rest_port = self._port(base + 2 * i + 1 if base else 0)
            self.spawn(f"{name}-serving", 2, [*cli, "--model_name", name, "--model_base_path",
                                              str((self.args.models_dir / name).resolve()),
                                              "--port", str(grpc_port), "--rest_api_port", str(rest_port)])
            self.env[f"{PREFIX}{name.upper()}_MODEL_SERVER"] = f"127.0.0.1:{grpc_port}"

    def start_workers(self) -> None:
        for queue in WORKER_QUEUES:
            for k in range(1, self.args.workers[queue] + 1):
                self.spawn(f"{queue}-worker-{k}", WORKER_GROUP, [sys.executable, "-m", f"services.{queue}",
                                                                 "--hostname", f"{queue}-{k}@%h"])

    def start_gateway(self) -> str:
        bind = f"{self.args.host}:{self.args.port}"
        self.spawn("gateway", 0, [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", "1",
                                  "--threads", "8", "--timeout", "300", "gateway.app:create_app()"],
                   env={**self.env, **self.key_env})
        host = "127.0.0.1" if self.args.host in ("0.0.0.0", "") else self.args.host
        return f"http://{host}:{self.args.port}"

    def check_children(self) -> Child | None:
        """The first child that exited, if any."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def wait_ready(self, url: str) -> bool:
        deadline = time.monotonic() + self.args.ready_timeout
        while time.monotonic() < deadline and not self.stopping:
            dead = self.check_children()
            if dead is not None:
                log.error("process exited during start-up", extra={"process": dead.name,
                                                                     "returncode": dead.process.returncode})
                return False
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        return False

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop every child, group by group (gateway, workers, model servers, Redis)."""
        for group in sorted({c.group for c in self.children}):
            members = [c for c in self.children if c.group == group and c.process.poll() is None]
            for child in members:
                child.process.terminate()
            deadline = time.monotonic() + grace_s
            for child in members:
                try:
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("killing", extra={"process": child.name, "pid": child.process.pid})
                    child.process.kill()
                    child.process.wait(timeout=10)
        log.info("ensemble stopped")


def wait_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"empathy up: nothing listens on {host}:{port} after {timeout} s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    missing = [m for m in MODALITIES if not list_versions(args.models_dir / m)]
    if missing:
        print(f"empathy up: no model for {', '.join(missing)} under {args.models_dir}; build the bundled ones with "
              f"`python -m gateway.bootstrap --models-dir {args.models_dir}` or train them with `empathy train`",
              file=sys.stderr)
        return 2
    launcher = Launcher(args)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        launcher.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        launcher.start_redis()
        launcher.start_model_servers()
        launcher.start_workers()
        generated_key = launcher.generate_key()
        url = launcher.start_gateway()
        if not launcher.wait_ready(url):
            if not launcher.stopping:
                log.error("the ensemble did not become ready", extra={"url": url})
                code = 1
        else:
            print(f"ensemble ready: {url}  (submit: empathy submit VIDEO --gateway {url} --wait; Ctrl-C stops)",
                  flush=True)
            if generated_key is not None:
                print(f"API key generated for this run (set EMPATHY_API_KEYS to choose your own):\n"
                      f"  export EMPATHY_API_KEY={generated_key}", flush=True)
            while not launcher.stopping:
                dead = launcher.check_children()
                if dead is not None and not launcher.restart(dead):
                    log.error("process exited; stopping the ensemble",
                              extra={"process": dead.name, "returncode": dead.process.returncode})
                    code = 1
                    break
                time.sleep(0.5)
    finally:
        launcher.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
