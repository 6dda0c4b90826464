"""Peak memory and CPU time of running processes, read from ``/proc`` (Linux).

The ensemble is a tree of processes (the ``empathy up`` launcher, its model servers, Celery workers with
their pool processes, gunicorn with its worker): the benchmark reports every one of them, because the
target is on *each* process (a worker must stay small whatever the video length), not on their sum.
``VmHWM`` is the kernel's own peak resident set size of a process since it started, so no sampling can
miss a short spike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    parent: int
    label: str  # a readable name from the command line (e.g. "services.worker face", "serve-models face")
    peak_rss_mib: float  # VmHWM
    cpu_s: float  # user + system CPU time so far


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may itself contain spaces and parentheses)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (0 when it is gone)."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15 of stat)


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process in MiB (0 when it is gone or has no memory of its own)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def label_of(pid: int) -> str:
    """What the process runs, short: ``-m <module> <first args>`` for Python, else the program name."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in argv if a]
    if not args:
        return "?"
    if "-m" in args:
        at = args.index("-m")
        module, rest = args[at + 1] if at + 1 < len(args) else "", args[at + 2:]
        if module == "services.worker" and rest:  # one entry point for every worker: its queue names it
            return f"services.worker {rest[0]}"
        if module in ("cli", "cli.main") and rest:  # the empathy command: its sub-command names the process
            module, rest = rest[0], rest[1:]
        if module == "serve-models":
            if "--model_name" in rest:
                return f"model server {rest[rest.index('--model_name') + 1]}"
            return "model server (every model of the config file)"
        if module == "gunicorn":
            return "gateway (gunicorn)"
        if module == "up":
            return "launcher (empathy up)"
        return module
    return Path(args[0].split()[0]).name  # redis-server rewrites its title to "redis-server host:port"


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (children, grandchildren...), parents before their children."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    out: list[int] = []
    pending = sorted(children.get(root, []))
    while pending:
        pid = pending.pop(0)
        out.append(pid)
        pending.extend(sorted(children.get(pid, [])))
    return out


def sample_tree(root: int) -> list[ProcessSample]:
    """Peak memory and CPU time of ``root`` and every descendant, read now (they must still be running)."""
    samples: list[ProcessSample] = []
    labels: dict[int, str] = {}
    for pid in [root, *descendants(root)]:
        parent = parent_of(pid)
        if parent is None:
            continue
        label = label_of(pid)
        if labels.get(parent, "").startswith(label):  # a forked pool process runs its parent's command line
            label = f"{label} (pool process)"
        labels[pid] = label
        samples.append(ProcessSample(pid=pid, parent=parent, label=label, peak_rss_mib=peak_rss_mib(pid),
                                     cpu_s=cpu_seconds(pid)))
    return samples


def memory_now_mib(pid: int) -> tuple[float, float]:
    """(resident, proportional) set size of a live process now, in MiB; (0, 0) when it is gone.

    PSS divides each shared page among the processes sharing it (forked pool processes share their parent's
    libraries, model servers share TensorFlow's code pages), so the PSS of a tree adds up to the memory it
    really occupies, where the RSS sum counts shared pages once per process.
    """
    rss = pss = 0.0
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024.0
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, pss


class TreeMemory:
    """Samples the total memory of a process tree in a background thread (every ``interval_s``) and keeps
    the largest totals seen: what the whole ensemble holds at once, not the sum of peaks reached at
    different moments (which :func:`sample_tree`'s ``VmHWM`` gives)."""

    def __init__(self, root: int, interval_s: float = 1.0) -> None:
        import threading

        self.root, self.interval_s = root, interval_s
        self.peak_rss_mib = self.peak_pss_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def _sample(self) -> None:
        totals = [memory_now_mib(pid) for pid in [self.root, *descendants(self.root)]]
        self.peak_rss_mib = max(self.peak_rss_mib, sum(t[0] for t in totals))
        self.peak_pss_mib = max(self.peak_pss_mib, sum(t[1] for t in totals))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
