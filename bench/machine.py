"""A description of the machine a benchmark ran on, so its numbers can be judged and compared.

Timings are only comparable on the same hardware and under the same load: the report records the CPU
model, the cores this process may use, the memory, the load average before and after the run (other
users of a shared machine make every number slower and noisier) and the versions that matter.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Machine:
    cpu: str
    cores: int  # cores this process may run on (its affinity), not the host's total
    memory_gib: float
    system: str
    python: str
    versions: dict[str, str] = field(default_factory=dict)
    commit: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def markdown(self) -> str:
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        before = " / ".join(f"{v:.2f}" for v in self.load_before)
        after = " / ".join(f"{v:.2f}" for v in self.load_after)
        return "\n".join([
            f"- CPU: {self.cpu}, {self.cores} cores usable; memory {self.memory_gib:.1f} GiB",
            f"- system: {self.system}; Python {self.python}; {versions}",
            f"- code: {self.commit or 'unknown commit'}",
            f"- load average (1/5/15 min) before: {before}; after: {after} "
            "(load from other processes slows every stage and makes the numbers noisy)",
        ])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024.0**2
    except OSError:
        pass
    return 0.0


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "absent"


def _commit(repo: Path) -> str:
    """The checked-out commit, marked dirty when the working tree has changes (read-only git calls)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else ""


def describe(repo: Path) -> Machine:
    """The machine now; the caller sets ``load_after`` when the run ends."""
    return Machine(
        cpu=_cpu_model(),
        cores=len(os.sched_getaffinity(0)),
        memory_gib=_memory_gib(),
        system=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        versions={name: _version(name) for name in ("tensorflow", "av", "dlib-bin", "opencv-python-headless")},
        commit=_commit(repo),
        load_before=os.getloadavg(),
    )
