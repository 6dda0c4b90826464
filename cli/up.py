"""``empathy up``: the whole ensemble as local processes under one supervisor, for machines without Docker.

It starts what ``docker-compose.yml`` starts, with the same environment variables; both follow from the
modality registry (:mod:`shared.registry`, plugins included):

* a ``redis-server`` of its own (AOF persistence under ``<storage>/redis``), unless ``--redis-url`` or
  ``EMPATHY_REDIS_URL`` names one;
* ONE ``empathy serve-models`` serving every modality's model (a ``--model_config_file`` listing them; gRPC on
  ``--base-port``, REST on the next port): TensorFlow is loaded once, not once per model;
* one worker per modality queue and the fusion worker (``python -m services.worker <queue>``, Celery's
  ``threads`` pool: one process each, no second copy of the libraries in a pool child), with ``--workers
  landmarks=3,face=2`` to run several workers on a queue (as ``--scale`` does);
* the gateway under gunicorn (``gateway.server``: event-driven gevent worker with request-read deadlines, JSON errors).

The launcher is a supervisor: any child that exits (a worker, the model server, Redis, the gateway) is
logged with its exit status and started again after a back-off (1 s doubling to 30 s; reset once it has
run for a minute), on the same ports and, for Redis, the same append-only file, so accepted jobs and their
queued tasks survive. A child's death never stops the ensemble. Children run in their own sessions, so
Ctrl-C reaches only the launcher, which then stops every process group it started, in order (gateway,
workers, model server, Redis): SIGTERM first, SIGKILL after a grace period (a second Ctrl-C kills at once),
so that nothing is left behind.

API keys: unless ``EMPATHY_API_KEYS``/``EMPATHY_API_KEYS_FILE`` name some (or ``EMPATHY_AUTH=off``), a
key is generated for this run and printed once with the ready line; only the gateway gets the keys. The
webhook signing key (``EMPATHY_WEBHOOK_SIGNING_KEY``, from which each API key's callback secret is derived)
is generated once into ``<storage>/webhook-signing.key`` (mode 600) unless set, and given to the gateway and
the fusion workers, so callback secrets stay the same across restarts.

What survives a restart of ``empathy up`` with the same ``--storage-dir``: its Redis appends every write to
``<storage>/redis/appendonly.aof`` (fsync every second), so accepted jobs, their queued tasks and their
states come back, and the videos and results stay in ``<storage>/jobs``; workers take the queued tasks up
again. Ctrl-C lets running analyses finish (up to the grace period); one cut short is taken up again by
the job watchdog (``services.watchdog``). With ``--redis-url`` that Redis's own persistence applies.
"""

from __future__ import annotations

import argparse
import json
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from serving.model_store import list_versions
from shared.logs import configure_logging
from shared.ports import free_port
from shared.registry import VISION_QUEUE, entries, worker_queues
from shared.settings import PREFIX, get_settings

log = logging.getLogger(__name__)

WORKER_QUEUES = worker_queues()  # every modality's, fusion and vision (vision: EMPATHY_VISION_WORKER, on by default here)
WORKER_GROUP = 1
BACKOFF_FIRST_S = 1.0  # first restart delay of a child that exited; doubles while it keeps exiting
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_S = 60.0  # a child that ran this long before exiting starts again after BACKOFF_FIRST_S
STOP_GRACE_S = 30.0  # SIGTERM -> SIGKILL
KEY_VARIABLES = (f"{PREFIX}API_KEYS", f"{PREFIX}API_KEYS_FILE")  # secrets: the gateway's environment only


@dataclass
class Child:
    name: str
    group: int  # stop order: lower first
    process: subprocess.Popen
    argv: list[str]
    env: dict[str, str]
    restarts: int = 0
    started_at: float = 0.0
    backoff_s: float = 0.0
    restart_at: float | None = None  # set while an exited child waits for its back-off


def parse_workers(spec: str) -> dict[str, int]:
    """``landmarks=3,face=2`` -> {"landmarks": 3, "face": 2}; every other queue gets 1 worker."""
    counts = dict.fromkeys(WORKER_QUEUES, 1)
    # the decode-once worker: on by default here, where every worker shares one machine (EMPATHY_VISION_WORKER)
    counts[VISION_QUEUE] = 1 if get_settings().vision_worker_on(one_machine=True) else 0
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
                        help="model-server port (gRPC; REST on the next); 0 = pick free ports")
    parser.add_argument("--workers", type=parse_workers, default=parse_workers(""),
                        help="workers per queue, e.g. landmarks=3,face=2 (default 1 each)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for /readyz")
    return parser


class Launcher:
    """Starts the children, restarts those that exit, and stops them all on request."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.children: list[Child] = []
        self.stopping = False
        self.kill_now = False  # a second Ctrl-C: no grace period
        self.env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
        vision = get_settings().vision_worker_on(one_machine=True)  # 'auto' resolved once, for every child
        self.env.update({f"{PREFIX}MODELS_DIR": str(args.models_dir.resolve()),
                         f"{PREFIX}STORAGE_DIR": str(args.storage_dir.resolve()),
                         f"{PREFIX}VISION_WORKER": "on" if vision else "off",
                         "PYTHONUNBUFFERED": "1"})
        self.key_env = {k: os.environ[k] for k in KEY_VARIABLES if os.environ.get(k)}
        if not os.environ.get(f"{PREFIX}WEBHOOK_SIGNING_KEY"):
            self.env[f"{PREFIX}WEBHOOK_SIGNING_KEY"] = signing_key(args.storage_dir)

    def spawn(self, name: str, group: int, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, group, _popen(argv, env or self.env), argv, env or self.env)
        child.started_at = time.monotonic()
        self.children.append(child)
        log.info("started", extra={"child": name, "pid": child.process.pid, "argv": " ".join(argv)})
        return child

    def generate_key(self) -> str | None:
        """A key for this run when authentication is on and none is configured (printed once, never logged)."""
        if not get_settings().auth or self.key_env:
            return None
        token = secrets.token_urlsafe(32)
        self.key_env = {f"{PREFIX}API_KEYS": f"local:{token}"}
        return token

    def supervise(self) -> None:
        """One pass: log each child that exited and start it again once its back-off has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.process.poll() is None or self.stopping:
                continue
            if child.restart_at is None:
                ran_s = now - child.started_at
                child.backoff_s = BACKOFF_FIRST_S if ran_s >= BACKOFF_RESET_S else min(
                    BACKOFF_MAX_S, max(BACKOFF_FIRST_S, child.backoff_s * 2))
                child.restart_at = now + child.backoff_s
                _kill_group(child.process.pid, signal.SIGKILL)  # a dead leader's pool/threads must not linger
                log.warning("child exited; restarting it after a back-off",
                            extra={"child": child.name, "pid": child.process.pid,
                                   "returncode": child.process.returncode, "ran_s": round(ran_s, 1),
                                   "restart_in_s": child.backoff_s, "restarts": child.restarts})
            elif now >= child.restart_at:
                child.process = _popen(child.argv, child.env)
                child.started_at, child.restart_at = now, None
                child.restarts += 1
                log.warning("child restarted", extra={"child": child.name, "pid": child.process.pid,
                                                      "restarts": child.restarts})

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

    def start_model_server(self) -> None:
        """One model server for every modality's model: one TensorFlow in memory instead of one per model.

        The models are listed in a TF Serving model config file rather than served as "every folder of the
        models directory": that directory also holds the fusion model (``models/fusion``, metadata only),
        which the fusion worker reads itself and which is no SavedModel.
        """
        base = self.args.base_port
        grpc_port, rest_port = self._port(base), self._port(base + 1 if base else 0)
        config = (self.args.storage_dir / "model_config.txt").resolve()
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(model_config_text(self.args.models_dir.resolve(), [e.servable for e in entries()]))
        self.spawn("model-server", 2, [sys.executable, "-m", "cli", "serve-models", "--host", "127.0.0.1",
                                       "--model_config_file", str(config),
                                       "--port", str(grpc_port), "--rest_api_port", str(rest_port)])
        for modality in entries():
            self.env[modality.model_server_variable] = f"127.0.0.1:{grpc_port}"

    def start_workers(self) -> None:
        for queue in WORKER_QUEUES:
            for k in range(1, self.args.workers[queue] + 1):
                self.spawn(f"{queue}-worker-{k}", WORKER_GROUP, [sys.executable, "-m", "services.worker", queue,
                                                                 "--hostname", f"{queue}-{k}@%h"])

    def start_gateway(self) -> str:
        bind = f"{self.args.host}:{self.args.port}"
        self.spawn("gateway", 0, [sys.executable, "-m", "gunicorn", "--config", "python:gateway.server",
                                  "--bind", bind, "gateway.app:create_app()"],
                   env={**self.env, **self.key_env})
        host = "127.0.0.1" if self.args.host in ("0.0.0.0", "") else self.args.host
        return f"http://{host}:{self.args.port}"

    def wait_ready(self, url: str) -> bool:
        deadline = time.monotonic() + self.args.ready_timeout
        while time.monotonic() < deadline and not self.stopping:
            self.supervise()
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        return False

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every child's process group, group by group (gateway, workers, model server, Redis).

        SIGTERM, then SIGKILL once ``grace_s`` has passed (at once after a second Ctrl-C); the whole
        process group each time, so gunicorn's and Celery's own children go too.
        """
        for group in sorted({c.group for c in self.children}):
            members = [c for c in self.children if c.group == group]
            for child in members:
                _kill_group(child.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for child in members:
                while child.process.poll() is None and time.monotonic() < deadline and not self.kill_now:
                    time.sleep(0.1)
                if child.process.poll() is None:
                    log.warning("killing", extra={"child": child.name, "pid": child.process.pid})
                _kill_group(child.process.pid, signal.SIGKILL)  # stragglers of the group, if any
                child.process.wait(timeout=10)
        log.info("ensemble stopped")


def signing_key(storage_dir: Path) -> str:
    """The webhook signing key kept in ``<storage>/webhook-signing.key``, made (random, mode 600) on first use."""
    path = storage_dir / "webhook-signing.key"
    if not path.is_file():
        storage_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def _popen(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A child in a session (and process group) of its own: Ctrl-C reaches only the launcher."""
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def model_config_text(models_dir: Path, names: Sequence[str]) -> str:
    """TF Serving's ``--model_config_file`` text proto serving ``models_dir/<name>`` for each name."""
    entries = "".join(f"  config {{ name: {json.dumps(n)} base_path: {json.dumps(str(models_dir / n))} "
                      f"model_platform: \"tensorflow\" }}\n" for n in names)
    return f"model_config_list {{\n{entries}}}\n"


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
    missing = [e.servable for e in entries() if not list_versions(args.models_dir / e.servable)]
    if missing:
        print(f"empathy up: no model for {', '.join(missing)} under {args.models_dir}; build the bundled ones with "
              f"`python -m training.bootstrap --models-dir {args.models_dir}` or train them with `empathy train`",
              file=sys.stderr)
        return 2
    launcher = Launcher(args)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        launcher.kill_now = launcher.stopping  # the second Ctrl-C: no grace period
        launcher.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        launcher.start_redis()
        launcher.start_model_server()
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
                launcher.supervise()
                time.sleep(0.5)
    finally:
        launcher.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
