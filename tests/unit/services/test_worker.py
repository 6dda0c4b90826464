"""The one worker entry point, ``python -m services.worker <queue>``, as the containers and ``empathy up`` run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.worker import worker_argv
from shared.registry import worker_queues
from tests import REPO


def test_an_unknown_queue_gets_the_usage_and_status_2() -> None:
    result = subprocess.run([sys.executable, "-m", "services.worker", "smell"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert "usage: python -m services.worker <queue>" in result.stderr
    assert result.stderr.split("queues:", 1)[1].split() == list(worker_queues())


def test_every_registry_queue_is_a_worker_queue() -> None:
    for queue in worker_queues():
        argv = worker_argv(queue, ["--hostname", f"{queue}-1@%h"])
        assert argv[argv.index("--queues") + 1] == queue and argv[-2:] == ["--hostname", f"{queue}-1@%h"]
    with pytest.raises(ValueError, match="unknown queue"):
        worker_argv("smell")
