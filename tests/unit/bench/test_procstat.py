"""bench.procstat: processes of the ensemble named by what they run, read from /proc of real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.procstat import label_of


@pytest.mark.parametrize(("argv", "label"), [
    (["-m", "cli", "serve-models", "--model_config_file", "models.config"],
     "model server (every model of the config file)"),
    (["-m", "cli", "serve-models", "--model_name", "face"], "model server face"),
    (["-m", "services.worker", "landmarks"], "services.worker landmarks"),
    (["-m", "cli", "up", "--port", "0"], "launcher (empathy up)"),
])
def test_each_process_is_named_by_its_command_line(argv: list[str], label: str) -> None:
    # a real process whose command line is the ensemble's (python ignores what follows -c's program)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *argv])
    try:
        # Popen may return while the child is still being exec'd (an empty or the parent's command line)
        deadline = time.monotonic() + 10
        while argv[-1].encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert label_of(proc.pid) == label
    finally:
        proc.kill()
        proc.wait()
