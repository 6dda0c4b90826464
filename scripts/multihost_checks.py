"""The checks of ``make test-multihost`` against the swarm stack that scripts/test_multihost.sh deployed.

Jobs go in and come out only through the gateway's port published on h1's address, as a user's would. The
docker CLI (against h1, the manager) is used only to wait for convergence, scale services and move them between
hosts, the way an operator would; the hosts themselves (scripts/multihost_hosts.sh) only to take h3 off the
network, to set each worker host's CPU quota, and to look at each host's disk. Each check raises ``CheckFailed``
with what it saw. At the end the table goes to stdout and var/multihost/report.md (docs/deploy.md quotes it).

Why these checks: they are what running on several machines promises and the compose test cannot show. Jobs
cross hosts through the object store alone (each host's disk is its own, nothing is shared), each task's worker
names the machine that ran it, a modality scaled to two replicas uses both machines, a machine lost while it
holds tasks costs time but no job (re-delivery), and a second worker machine adds throughput.

Phases (h3 starts drained, so every modality first runs on h2):
  1. convergence: every service of the stack running (health checks passed) after ``docker stack deploy``;
  2. one worker host (h2, CPU quota): a 60 s clip through every modality, then jobs/hour of 20 s clips;
  3. h3 active, ``docker service scale`` every worker and model server to 2 (one per host): the 60 s clip
     across hosts, jobs/hour again, every modality's tasks on both hosts; no job file on any host's disk;
  4. the model servers on h2 only (a worker keeps its gRPC connection: one to a lost host would only time out),
     h3 taken off the network while it holds tasks: every job ends ``done``, every modality ``ok``, on h2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from compose_checks import FUSED_CCC_FLOOR, CheckFailed, Gateway, check, result_rows, wait_until  # noqa: E402

from jobs.store import FINAL_STATES  # noqa: E402
from shared.ccc import ccc  # noqa: E402
from shared.data import read_labels  # noqa: E402
from shared.settings import MODALITIES  # noqa: E402

HOSTS = REPO / "scripts" / "multihost_hosts.sh"
OUT = REPO / "var" / "multihost"
WORKER_HOSTS = ("h2", "h3")
CPU_PER_HOST = 0.5          # each worker host's cgroup quota while jobs/hour and the 60 s job are measured
LONG_CLIP_S = 60.0          # the table's "60 s job"
SHORT_CLIP_S = 20.0         # the throughput and failover jobs
THROUGHPUT_JOBS = 6         # submitted at once per measurement
RECOVERY_BOUND_S = 300.0    # a lost host's tasks: visibility timeout (60 s) + restore + redoing the work


def step(message: str) -> None:
    print(f"test-multihost: {message}", flush=True)


def hosts(*args: str, timeout: float = 120) -> str:
    """scripts/multihost_hosts.sh ARGS: its stdout, or CheckFailed with its output."""
    result = subprocess.run([str(HOSTS), *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise CheckFailed(f"multihost_hosts.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def manager(*args: str, timeout: float = 120) -> str:
    """The docker CLI against h1, the swarm's manager."""
    return hosts("docker", "h1", *args, timeout=timeout)


class Stack:
    """The deployed stack's services, as the manager sees them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def service(self, short: str) -> str:
        return f"{self.name}_{short}"

    def replicas(self) -> dict[str, tuple[int, int]]:
        """service -> (running, desired), from ``docker service ls`` (a task with a health check counts as
        running once it is healthy)."""
        out = manager("service", "ls", "--filter", f"label=com.docker.stack.namespace={self.name}",
                      "--format", "{{.Name}} {{.Replicas}}")
        result = {}
        for line in out.split("\n"):
            if line.strip():
                name, counts = line.split()[:2]
                running, desired = counts.split("/")
                result[name] = (int(running), int(desired))
        return result

    def converged(self) -> bool:
        replicas = self.replicas()
        return bool(replicas) and all(r == d for r, d in replicas.values())

    def wait_converged(self, what: str, timeout: float = 420) -> float:
        started = time.monotonic()
        try:
            wait_until(self.converged, timeout=timeout, what=what, interval=2)
        except CheckFailed:
            raise CheckFailed(f"{what}: not converged after {timeout:.0f} s: {self.replicas()}") from None
        return time.monotonic() - started

    def nodes_of(self, short: str) -> list[str]:
        """The nodes (hostnames) of a service's running tasks."""
        out = manager("service", "ps", self.service(short), "--filter", "desired-state=running",
                      "--format", "{{.Node}} {{.CurrentState}}")
        return sorted(line.split()[0] for line in out.split("\n") if line.strip().startswith("h")
                      and "Running" in line)


def worker_host(entry: dict[str, Any]) -> str:
    """The machine of a modality's worker: "<queue>@<node>-<slot>" (the stack names workers after their node)."""
    return entry.get("worker", "").split("@", 1)[-1].rsplit("-", 1)[0]


def make_clip(out_dir: Path, seconds: float, story: int) -> Any:
    from synthetic import generate_clip

    return generate_clip(out_dir, subject=1, story=story, duration_s=seconds, width=640, height=360, seed=story)


def full_job(gateway: Gateway, clip: Any, seconds: float, what: str) -> tuple[dict[str, Any], float]:
    """A clip through every modality: done, every modality ok, 25 rows per second, the fused CCC above the floor;
    the job and its time."""
    started = time.monotonic()
    job_id = gateway.submit(clip.video, subject=clip.subject)
    job = gateway.wait(job_id, timeout=900)
    elapsed = time.monotonic() - started
    check_ok(job, what)
    rows = result_rows(gateway, job_id)
    n_frames = int(round(seconds * 25))
    check(rows.shape[0] == n_frames, f"{what}: {rows.shape[0]} rows, expected {n_frames}")
    fused = ccc(read_labels(clip.labels), rows[:, 0])
    check(fused > FUSED_CCC_FLOOR, f"{what}: fused CCC {fused:.3f} <= floor {FUSED_CCC_FLOOR}")
    job["fused_ccc"] = fused
    return job, elapsed


def check_ok(job: dict[str, Any], what: str) -> None:
    check(job["state"] == "done", f"{what}: job {job['id']} ended {job['state']}: {json.dumps(job)[:800]}")
    bad = {m: s for m, s in job["modalities"].items() if s["status"] != "ok"}
    check(not bad and sorted(job["modalities"]) == sorted(MODALITIES), f"{what}: modalities not all ok: {bad}")


def throughput(gateway: Gateway, clip: Any, what: str) -> tuple[float, dict[str, set[str]]]:
    """THROUGHPUT_JOBS jobs submitted at once: jobs per hour from the first submission to the last job done,
    and the hosts that ran each modality."""
    started = time.monotonic()
    ids = [gateway.submit(clip.video, subject=clip.subject) for _ in range(THROUGHPUT_JOBS)]
    ran: dict[str, set[str]] = {m: set() for m in MODALITIES}
    for job_id in ids:
        job = gateway.wait(job_id, timeout=900)
        check_ok(job, what)
        for modality, entry in job["modalities"].items():
            ran[modality].add(worker_host(entry))
    elapsed = time.monotonic() - started
    per_hour = THROUGHPUT_JOBS / elapsed * 3600
    step(f"{what}: {THROUGHPUT_JOBS} jobs of {SHORT_CLIP_S:.0f} s in {elapsed:.0f} s = {per_hour:.0f} jobs/h; "
         f"hosts per modality {({m: sorted(h) for m, h in ran.items()})}")
    return per_hour, ran


def set_quota(cpus: float | None) -> None:
    for host in WORKER_HOSTS:
        hosts("quota", host, "off" if cpus is None else str(cpus))


def scan_disks(names: list[str], sizes: dict[int, str]) -> dict[str, list[str]]:
    """Files on each host's disk (its daemon's data root: image layers, containers' writable layers, volumes)
    whose name carries a job id, or whose bytes are an uploaded clip's (same size, same sha256)."""
    found: dict[str, list[str]] = {}
    for host in ("h1", *WORKER_HOSTS):
        root = OUT / host
        expression: list[str] = []
        for name in names:
            expression += ["-o", "-name", f"*{name}*"]
        for size in sizes:
            expression += ["-o", "-size", f"{size}c"]
        result = subprocess.run(["find", str(root), "-xdev", "(", *expression[1:], ")", "-print"],
                                capture_output=True, text=True, timeout=300)
        hits = []
        for path in result.stdout.split("\n"):
            if not path:
                continue
            file = Path(path)
            if any(name in file.name for name in names):
                hits.append(path)
            elif file.is_file() and sizes.get(file.stat().st_size) == hashlib.sha256(file.read_bytes()).hexdigest():
                hits.append(path)
        found[host] = hits
    return found


def check_no_job_files(stack: Stack, job_ids: list[str], clips: list[Any]) -> None:
    """No host keeps a file of a finished job: not on the gateway's host (it streamed the upload into the store),
    not on the workers' (their private copy is deleted when the task ends). A planted copy shows the scan sees
    the containers' files."""
    sizes = {c.video.stat().st_size: hashlib.sha256(c.video.read_bytes()).hexdigest() for c in clips}
    names = [*job_ids, *(f"empathy-{j[:8]}-" for j in job_ids)]
    container = hosts("docker", "h2", "ps", "-q", "--filter",
                      f"label=com.docker.swarm.service.name={stack.service('landmarks')}").split()[0]
    planted = f"/tmp/planted-{job_ids[0]}.mp4"
    hosts("docker", "h2", "cp", str(clips[0].video), f"{container}:{planted}")
    control = scan_disks(names, sizes)
    hosts("docker", "h2", "exec", "-u", "0", container, "rm", "-f", planted)
    check(any(planted.rsplit("/", 1)[-1] in p for p in control["h2"]),
          f"the disk scan did not see a file planted in a worker's container: {control}")
    found = scan_disks(names, sizes)
    step(f"disks of h1, h2, h3: no file of the {len(job_ids)} jobs (the scan found the planted control copy)"
         if not any(found.values()) else f"job files on disk: {found}")
    check(not any(found.values()), f"files of jobs on the hosts' disks: {found}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="http://<h1's address>:<published port>")
    parser.add_argument("--api-key-file", type=Path, required=True,
                        help="the stack's api_keys secret file (name:key lines; the first key is used)")
    parser.add_argument("--stack", default="empathy", help="the stack's name")
    parser.add_argument("--deployed-at", type=float, required=True, help="epoch seconds of `docker stack deploy`")
    parser.add_argument("--images-s", type=float, default=float("nan"), help="hosts up and images loaded (s)")
    args = parser.parse_args(argv)
    stack = Stack(args.stack)
    gateway = Gateway(args.gateway, args.api_key_file.read_text().splitlines()[0].split(":", 1)[1])
    report: dict[str, Any] = {"images_s": args.images_s, "cpu_per_host": CPU_PER_HOST}
    job_ids: list[str] = []
    try:
        long_clip = make_clip(OUT / "clips", LONG_CLIP_S, story=7)
        short_clip = make_clip(OUT / "clips", SHORT_CLIP_S, story=8)

        # 1. convergence
        stack.wait_converged("the stack after deploy", timeout=600)
        report["converge_s"] = time.time() - args.deployed_at
        for short in ("redis", "s3", "gateway", "fusion"):
            check(stack.nodes_of(short) == ["h1"], f"{short} runs on {stack.nodes_of(short)}, not h1")
        for modality in MODALITIES:
            for short in (modality, f"{modality}-serving"):
                check(stack.nodes_of(short) == ["h2"], f"{short} runs on {stack.nodes_of(short)}, not h2 (h3 drained)")
        ready = wait_until(lambda: gateway.get("/readyz").status_code == 200, timeout=120, what="/readyz 200")
        step(f"converged {report['converge_s']:.0f} s after `docker stack deploy` (readyz {ready}): "
             "h1 redis s3 gateway fusion, h2 every worker and model server, h3 drained")

        # 2. one worker host
        set_quota(CPU_PER_HOST)
        job, report["job_one_host_s"] = full_job(gateway, long_clip, LONG_CLIP_S, "60 s clip, workers on h2")
        job_ids.append(job["id"])
        hosts_of = {m: worker_host(e) for m, e in job["modalities"].items()}
        check(set(hosts_of.values()) == {"h2"}, f"workers of the job on one host: {hosts_of}")
        report["fused_ccc"] = job["fused_ccc"]
        step(f"60 s clip, every modality on h2 ({CPU_PER_HOST} CPU): {report['job_one_host_s']:.0f} s, "
             f"1500 rows, fused CCC {job['fused_ccc']:.3f} (floor {FUSED_CCC_FLOOR}); workers {hosts_of}")
        report["jobs_per_hour_1"], _ = throughput(gateway, short_clip, "one worker host")

        # 3. two worker hosts: h3 active, every worker and model server scaled to 2 (spread: one per host)
        set_quota(None)  # the new model servers load at full speed; the quota is back for the measures
        manager("node", "update", "--availability", "active", "h3")
        services = [stack.service(s) for m in MODALITIES for s in (m, f"{m}-serving")]
        manager("service", "scale", "--detach", *(f"{s}=2" for s in services))
        report["scale_out_s"] = stack.wait_converged("scaled to 2 replicas")
        for modality in MODALITIES:
            for short in (modality, f"{modality}-serving"):
                check(stack.nodes_of(short) == ["h2", "h3"], f"{short} on {stack.nodes_of(short)}, not h2 and h3")
        step(f"`docker service scale` every worker and model server to 2: one per host, converged in "
             f"{report['scale_out_s']:.0f} s")
        set_quota(CPU_PER_HOST)
        job, report["job_two_hosts_s"] = full_job(gateway, long_clip, LONG_CLIP_S, "60 s clip, workers on h2 and h3")
        job_ids.append(job["id"])
        step(f"60 s clip across hosts: {report['job_two_hosts_s']:.0f} s, fused CCC {job['fused_ccc']:.3f}; "
             f"workers {({m: e.get('worker') for m, e in job['modalities'].items()})}")
        report["jobs_per_hour_2"], ran = throughput(gateway, short_clip, "two worker hosts")
        for modality, ran_on in ran.items():
            check(ran_on == {"h2", "h3"}, f"{modality}: its 2 replicas did not both take tasks: ran on {ran_on}")
        report["scaling_ratio"] = report["jobs_per_hour_2"] / report["jobs_per_hour_1"]
        step(f"every modality's tasks ran on both h2 and h3; jobs/h {report['jobs_per_hour_1']:.0f} -> "
             f"{report['jobs_per_hour_2']:.0f} (x{report['scaling_ratio']:.2f}, target 1.8)")
        listed = gateway.get("/v1/jobs", params={"limit": 50})
        job_ids += [j["id"] for j in listed.json().get("jobs", []) if j["id"] not in job_ids]
        check_no_job_files(stack, job_ids, [long_clip, short_clip])

        # 4. h3 lost while it holds tasks
        set_quota(None)
        servers = [stack.service(f"{m}-serving") for m in MODALITIES]
        for service in servers:
            manager("service", "update", "--detach", "--replicas", "1",
                    "--constraint-add", "node.labels.empathy.host==h2", service)

        def moved() -> bool:
            # one running task each, on h2, none left on h3. Swarm keeps h2's task (it still fits the new
            # constraint: no restart), so the check is where tasks run, not which spec they run
            for service in servers:
                out = manager("service", "ps", service, "--format", "{{.Node}} {{.CurrentState}}")
                if [line.split()[0] for line in out.splitlines() if " Running " in f"{line} "] != ["h2"]:
                    return False
            return stack.converged()

        wait_until(moved, timeout=300, what="the model servers on h2 alone", interval=2)
        recovery = check_lost_host(gateway, short_clip)
        report.update(recovery)
        step("every check passed")
    finally:
        set_quota(None)
        (OUT / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        text = table(report)
        (OUT / "report.md").write_text(text + "\n")
        print(text, flush=True)
    return 0


def check_lost_host(gateway: Gateway, clip: Any) -> dict[str, Any]:
    """Jobs submitted, h3 taken off the network once it runs a task of them, every job done with every modality
    ok and the tasks h3 held finished on h2; h3 back on the network, its node Ready again."""
    held: list[tuple[str, str]] = []
    for _batch in range(3):  # a batch can end before h3 is seen working on it: then another
        ids = [gateway.submit(clip.video, subject=clip.subject) for _ in range(THROUGHPUT_JOBS)]
        deadline = time.monotonic() + 300
        while not held and time.monotonic() < deadline:
            jobs = {job_id: gateway.status(job_id) or {"state": "unknown", "modalities": {}} for job_id in ids}
            held = [(job_id, m) for job_id, job in jobs.items() for m, e in job["modalities"].items()
                    if worker_host(e) == "h3" and e["status"] in ("preparing", "predicting", "postprocessing")]
            if all(job["state"] in FINAL_STATES for job in jobs.values()):
                break
            time.sleep(0.3)
        if held:
            break
        step("the batch ended before h3 was seen running one of its tasks: another batch")
    check(bool(held), "h3 never ran a task of three batches of jobs")
    hosts("link", "h3", "down")
    cut = time.monotonic()
    step(f"h3 off the network (eth0 down) while it ran {held}")
    try:
        finished: dict[str, float] = {}
        for job_id in ids:
            job = gateway.wait(job_id, timeout=RECOVERY_BOUND_S)
            finished[job_id] = time.monotonic() - cut
            check_ok(job, "after h3 was lost")
            for held_job, modality in held:
                if held_job == job_id:
                    entry = job["modalities"][modality]
                    check(worker_host(entry) == "h2" and entry.get("attempts", 1) >= 2,
                          f"{modality} of {job_id}, held by h3, was not delivered again to h2: {entry}")
        recover_s = max(finished.values())
        check(recover_s <= RECOVERY_BOUND_S, f"recovery took {recover_s:.0f} s > {RECOVERY_BOUND_S:.0f} s")
        step(f"every job done, every modality ok, h3's tasks redone on h2: the last job {recover_s:.0f} s after the "
             f"cut (bound {RECOVERY_BOUND_S:.0f} s)")
    finally:
        hosts("link", "h3", "up")
    back = time.monotonic()

    def h3_ready() -> bool:
        return manager("node", "inspect", "-f", "{{.Status.State}}", "h3").strip() == "ready"

    wait_until(h3_ready, timeout=120, what="h3 Ready again after its link came back", interval=1)
    step(f"h3 back on the network: node Ready after {time.monotonic() - back:.0f} s")
    return {"recover_s": recover_s, "lost_tasks": len(held)}


def table(report: dict[str, Any]) -> str:
    def value(key: str, unit: str = "s", digits: int = 0) -> str:
        number = report.get(key)
        if number is None or (isinstance(number, float) and np.isnan(number)):
            return "not measured"
        return f"{number:.{digits}f} {unit}".rstrip()

    cpu = f"{report.get('cpu_per_host', CPU_PER_HOST)} CPU per worker host"
    rows = [
        ("hosts up, images loaded into 3 daemons", value("images_s")),
        ("`docker stack deploy` to every service running (converged)", value("converge_s")),
        ("`docker service scale` workers + model servers to 2 (onto h3)", value("scale_out_s")),
        (f"job, {LONG_CLIP_S:.0f} s clip, 5 modalities, workers on one host ({cpu})", value("job_one_host_s")),
        (f"job, same clip, workers across h2 + h3 ({cpu})", value("job_two_hosts_s")),
        ("fused CCC vs ground truth (floor)", f"{report['fused_ccc']:.3f} ({FUSED_CCC_FLOOR})"
         if "fused_ccc" in report else "not measured"),
        (f"jobs/h, {SHORT_CLIP_S:.0f} s clips, workers on 1 host", value("jobs_per_hour_1", "")),
        (f"jobs/h, {SHORT_CLIP_S:.0f} s clips, workers on 2 hosts", value("jobs_per_hour_2", "")),
        ("scaling ratio 2 hosts / 1 host (target 1.8)", value("scaling_ratio", "x", 2)),
        ("h3 lost while running tasks: last job done after", value("recover_s")),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {text} |" for name, text in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except CheckFailed as exc:
        print(f"test-multihost: FAILED: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
