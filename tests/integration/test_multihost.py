"""`make test-multihost` wiring, checked without an engine (the test itself runs in CI after test-compose).

What can break here without Docker: CI no longer running it, or running it before test-compose built the images
it loads; a worker of the swarm stack no longer named after its node (the checks read the machine that ran a
task from the worker's name, ``<queue>@<node>-<slot>``); the scripts no longer parsing; the docs' table gone.
"""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests import REPO

sys.path.insert(0, str(REPO / "scripts"))

import multihost_checks  # noqa: E402


def test_ci_runs_it_after_test_compose_and_make_runs_the_script() -> None:
    lines = [line.split("#")[0].strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert "make test-multihost" in lines
    assert lines.index("make test-multihost") > lines.index("make test-compose")  # it loads test-compose's images
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test-multihost: setup.*\n\t@bash scripts/test_multihost.sh$", makefile, re.MULTILINE)
    assert re.search(r"^\.PHONY:.* test-multihost( |$)", makefile, re.MULTILINE)


def test_the_scripts_parse() -> None:
    for script in ("test_multihost.sh", "multihost_hosts.sh"):
        result = subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_stack_workers_are_named_after_their_node_as_the_checks_read_them() -> None:
    stack = yaml.safe_load((REPO / "deploy/swarm/stack.yml").read_text())
    workers = {name: s for name, s in stack["services"].items() if s["image"].split("/")[-1].split(":")[0]
               in ("worker", "fusion")}
    assert {"audio", "text", "face", "landmarks", "body", "fusion"} <= set(workers)
    for name, service in workers.items():
        assert service.get("hostname") == "{{.Node.Hostname}}-{{.Task.Slot}}", name
    # Celery's worker name is <queue>@%h: the node comes back out of it, slot numbers of any width
    assert multihost_checks.worker_host({"worker": "landmarks@h2-1"}) == "h2"
    assert multihost_checks.worker_host({"worker": "audio@gpu-node-7-12"}) == "gpu-node-7"
    assert multihost_checks.worker_host({}) == ""


def test_the_docs_describe_it_and_quote_its_table() -> None:
    docs = (REPO / "docs/deploy.md").read_text()
    section = docs[docs.index("## `make test-multihost`"):]
    assert "| measure" in section and "scaling ratio" in section
