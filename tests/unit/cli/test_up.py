"""The ``empathy up`` supervisor (cli/up.py), at the settings' defaults (log level INFO included): its
arguments, the model server's config, API keys, and children that die or will not stop.

Children here are small real processes (sleepers, a real redis-server, the model server); the whole ensemble
under the launcher is exercised by tests/integration/test_ensemble_integration.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from cli.up import Launcher, build_parser, model_config_text, parse_workers, wait_port
from shared.logs import configure_logging
from shared.settings import MODALITIES, Settings, get_settings
from tests.ensemble_support import API_TOKENS, REPO, environment, wait_for

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


# --- arguments ----------------------------------------------------------------------------------------------
def test_workers_scaling_spec() -> None:
    counts = parse_workers("landmarks=3, face=2")
    assert counts["landmarks"] == 3 and counts["face"] == 2 and counts["audio"] == 1 and counts["fusion"] == 1
    for bad in ("landmarks", "smell=2", "face=0", "face=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_workers(bad)


def test_the_vision_worker_runs_by_default_and_not_when_it_is_switched_off() -> None:
    with environment({"EMPATHY_VISION_WORKER": "off"}):
        assert parse_workers("")["vision"] == 0
        assert parse_workers("vision=2")["vision"] == 2  # asked for explicitly
    for value in ("on", "auto"):  # auto: on here, where every worker shares one machine
        with environment({"EMPATHY_VISION_WORKER": value}):
            assert parse_workers("")["vision"] == 1


def test_auto_means_the_vision_worker_only_on_one_machine() -> None:
    assert Settings().vision_worker_on(one_machine=True) and not Settings().vision_worker_on()
    assert Settings(vision_worker="on").vision_worker_on() and not Settings(vision_worker="0").vision_worker_on(
        one_machine=True)
    with pytest.raises(ValueError, match="auto, on or off"):
        Settings(vision_worker="sometimes").vision_worker_on()


def test_up_refuses_to_start_without_models(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "cli", "up", "--models-dir", str(tmp_path / "none")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "training.bootstrap" in result.stderr
    assert not (tmp_path / "storage").exists() and not (tmp_path / "var").exists()  # nothing started


# --- the model server and Redis -----------------------------------------------------------------------------
def test_the_model_config_lists_every_model_for_tf_serving(tmp_path: Path) -> None:
    from services.model_server.repository import parse_model_config_text

    models = tmp_path / "a dir with spaces" / "models"
    configs = parse_model_config_text(model_config_text(models, MODALITIES))
    assert [c.name for c in configs] == list(MODALITIES)
    assert [Path(c.base_path) for c in configs] == [models / name for name in MODALITIES]
    assert all(c.policy.kind == "latest" for c in configs)  # the newest version of each, as TF Serving does


def test_one_model_server_serves_every_modality(launcher: Launcher) -> None:
    launcher.args.base_port = 0  # free ports
    launcher.start_model_server()
    child = next(c for c in launcher.children if c.name == "model-server")
    config = Path(child.argv[child.argv.index("--model_config_file") + 1])
    assert config.read_text() == model_config_text(launcher.args.models_dir.resolve(), MODALITIES)
    grpc_port = child.argv[child.argv.index("--port") + 1]
    assert grpc_port != child.argv[child.argv.index("--rest_api_port") + 1]
    assert {launcher.env[f"EMPATHY_{m.upper()}_MODEL_SERVER"] for m in MODALITIES} == {f"127.0.0.1:{grpc_port}"}
    assert child.process.poll() is None  # a real process, stopped by the fixture


def test_an_existing_redis_is_used_instead_of_starting_one(launcher: Launcher, redis_url: str) -> None:
    launcher.args.redis_url = redis_url
    launcher.start_redis()
    assert launcher.env["EMPATHY_REDIS_URL"] == redis_url and launcher.children == []


def test_wait_port_returns_once_something_listens_and_gives_up_otherwise() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        started = time.monotonic()
        wait_port("127.0.0.1", port, timeout=5)
        assert time.monotonic() - started < 1
    with pytest.raises(SystemExit, match=f"nothing listens on 127.0.0.1:{port} after 0.5 s"):
        wait_port("127.0.0.1", port, timeout=0.5)


# --- API keys -----------------------------------------------------------------------------------------------
def test_up_generates_a_key_unless_one_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(models_dir=tmp_path / "models", storage_dir=tmp_path / "storage")
    for name in ("EMPATHY_API_KEYS", "EMPATHY_API_KEYS_FILE", "EMPATHY_AUTH"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    launcher = Launcher(args)
    token = launcher.generate_key()
    assert token is not None and len(token) >= 32
    assert launcher.key_env == {"EMPATHY_API_KEYS": f"local:{token}"}
    assert "EMPATHY_API_KEYS" not in launcher.env  # workers and model servers never see keys

    monkeypatch.setenv("EMPATHY_API_KEYS", f"ops:{API_TOKENS['bob']}")
    given = Launcher(args)
    assert given.generate_key() is None and given.key_env == {"EMPATHY_API_KEYS": f"ops:{API_TOKENS['bob']}"}
    assert "EMPATHY_API_KEYS" not in given.env
    monkeypatch.delenv("EMPATHY_API_KEYS")
    monkeypatch.setenv("EMPATHY_AUTH", "off")
    get_settings.cache_clear()
    assert Launcher(args).generate_key() is None
    get_settings.cache_clear()
