"""The ``empathy up`` supervisor (cli/up.py), at the settings' defaults (log level INFO included).

Children here are small real processes (sleepers, a real redis-server); the whole ensemble under the
launcher is exercised by tests/integration/test_ensemble_integration.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis

from cli.up import Launcher, build_parser
from shared.logs import configure_logging
from tests.ensemble_support import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# Ignores SIGTERM and starts a grandchild that ignores it too: only SIGKILL of the whole group stops them.
STUBBORN = [sys.executable, "-c",
            "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "p = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)']); "
            "time.sleep(120)"]


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def launcher(tmp_path: Path) -> Launcher:
    configure_logging()  # the default level (INFO): what users run with
    args = build_parser().parse_args(["--storage-dir", str(tmp_path / "storage"),
                                      "--models-dir", str(tmp_path / "models")])
    made = Launcher(args)
    yield made
    made.stop(grace_s=2)


def test_a_child_that_dies_is_logged_and_started_again(launcher: Launcher,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cli.up"):
        child = launcher.spawn("worker-under-test", 1, SLEEPER)  # raised KeyError ('process' in LogRecord)
        first = child.process.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: (launcher.supervise(), child.process.pid != first and alive(child.process.pid))[1],
                 timeout=15, what="the child restarted")
    exited = [r for r in caplog.records if r.getMessage().startswith("child exited")]
    assert exited and exited[0].child == "worker-under-test" and exited[0].returncode == -signal.SIGKILL
    assert child.restarts == 1 and not alive(first)
    started = [r for r in caplog.records if r.getMessage() == "started"]
    assert started[0].child == "worker-under-test" and started[0].pid == first


def test_back_off_grows_while_a_child_keeps_dying(launcher: Launcher) -> None:
    child = launcher.spawn("crasher", 1, [sys.executable, "-c", "raise SystemExit(3)"])
    delays = []
    deadline = time.monotonic() + 20
    while len(delays) < 3 and time.monotonic() < deadline:
        before = child.restart_at
        launcher.supervise()
        if child.restart_at is not None and child.restart_at != before:
            delays.append(child.backoff_s)
        time.sleep(0.05)
    assert delays == [1.0, 2.0, 4.0]  # exponential, the launcher itself still running


def test_stop_kills_whole_process_groups_that_ignore_sigterm(launcher: Launcher) -> None:
    child = launcher.spawn("stubborn", 1, STUBBORN)
    wait_for(lambda: len(_children_of(child.process.pid)) == 1, timeout=10, what="the grandchild")
    grandchild = _children_of(child.process.pid)[0]
    started = time.monotonic()
    launcher.stop(grace_s=1.0)
    assert time.monotonic() - started < 10
    assert child.process.returncode == -signal.SIGKILL
    wait_for(lambda: not alive(grandchild), timeout=5, what="the grandchild gone")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def test_redis_is_restarted_on_its_port_with_its_data(launcher: Launcher) -> None:
    launcher.start_redis()
    url = launcher.env["EMPATHY_REDIS_URL"]
    client = redis.Redis.from_url(url)
    client.set("accepted", "job")
    time.sleep(1.2)  # appendfsync everysec
    child = next(c for c in launcher.children if c.name == "redis")
    os.kill(child.process.pid, signal.SIGKILL)

    def back() -> bool:
        launcher.supervise()
        try:
            return client.get("accepted") == b"job"
        except redis.ConnectionError:
            return False

    wait_for(back, timeout=20, interval=0.2, what="redis restarted with its data")
    assert child.restarts == 1
