"""The checks of ``make test-compose`` against an ensemble that ``docker compose up -d --wait`` started.

Run by scripts/test_compose.sh (which builds the images, starts the stack and tears everything down); it
needs DOCKER_HOST/COMPOSE_FILE as that script exports them and the gateway's published port. Every job goes
in and comes out through the gateway's port only, as a user's would; docker is used only to scale, kill,
restart and stop containers, and to name the model server that ran. Each check raises ``CheckFailed`` with
what it saw. At the end it prints (and writes to var/compose/report.md) the table docs/docker.md quotes.

Why these checks: they are what compose promises and the unit tests cannot show. Service-name DNS, volumes
and secrets really connect the containers (a job completes with every modality), workers of one queue scale
independently (both replicas take tasks), ``task_acks_late`` survives a killed container, the append-only
Redis survives a restart, a model server that is gone fails only its modality, clearly, and a job's blobs live
in the object store, not on the containers' disks.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jobs.store import FINAL_STATES, MODALITY_FINAL  # noqa: E402
from shared.ccc import ccc  # noqa: E402
from shared.data import read_labels  # noqa: E402
from shared.ports import free_port  # noqa: E402
from shared.settings import MODALITIES  # noqa: E402

# The fused curve of the bundled models on an unseen synthetic story: measured in containers and with `empathy up`
# (docs/docker.md); the floor leaves room for other fusion defaults and retrained models.
FUSED_CCC_FLOOR = 0.3
CLIP_SECONDS = 60.0



class CheckFailed(AssertionError):
    """A check saw something other than what it expects; the message says what."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def step(message: str) -> None:
    print(f"test-compose: {message}", flush=True)


def compose(*args: str, timeout: float = 600) -> str:
    """``docker compose ARGS`` with this process's COMPOSE_FILE/DOCKER_HOST; its stdout, or CheckFailed."""
    result = subprocess.run(["docker", "compose", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise CheckFailed(f"docker compose {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise CheckFailed(f"docker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def containers(service: str) -> dict[str, str]:
    """Running containers of a compose service: hostname (what Celery's worker name carries) -> container id."""
    ids = compose("ps", "-q", service).split()
    return {docker("inspect", "-f", "{{.Config.Hostname}}", cid).strip(): cid for cid in ids}


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")


class Gateway:
    """The published port of the gateway, with one API key."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def submit(self, video: Path, *, subject: int, modalities: list[str] | None = None) -> str:
        data: dict[str, Any] = {"subject": str(subject)}
        if modalities:
            data["modalities"] = ",".join(modalities)
        for _ in range(30):  # 503 while Redis restarts: the gateway says when to retry
            with video.open("rb") as handle:
                response = self.session.post(self.url + "/v1/jobs", data=data,
                                             files={"video": (video.name, handle, "video/mp4")}, timeout=120)
            if response.status_code != 503:
                break
            time.sleep(float(response.headers.get("Retry-After", "2")))
        check(response.status_code == 202, f"POST /v1/jobs answered {response.status_code}: {response.text[:500]}")
        return response.json()["id"]

    def status(self, job_id: str) -> dict[str, Any] | None:
        try:
            response = self.get(f"/v1/jobs/{job_id}")
        except requests.RequestException:
            return None  # the gateway reconnecting: ask again
        return response.json() if response.status_code == 200 else None

    def wait(self, job_id: str, *, timeout: float) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            job = self.status(job_id)
            return job if job and job["state"] in FINAL_STATES else None

        return wait_until(final, timeout=timeout, what=f"job {job_id} to finish")


def redis_field(job_id: str, field: str) -> str:
    """One field of a job's hash, read inside the redis container (which worker hostname holds a task)."""
    return compose("exec", "-T", "redis", "redis-cli", "HGET", f"empathy:job:{job_id}", field).strip()


def make_clip(out_dir: Path) -> Any:
    from synthetic import generate_clip

    return generate_clip(out_dir, subject=1, story=7, duration_s=CLIP_SECONDS, width=640, height=360, seed=7)


def result_rows(gateway: Gateway, job_id: str) -> np.ndarray:
    response = gateway.get(f"/v1/jobs/{job_id}/result", params={"format": "csv"})
    check(response.status_code == 200, f"result of {job_id}: {response.status_code} {response.text[:300]}")
    lines = response.text.splitlines()
    expected = ["valence", "agreement", "band_low", "band_high", *MODALITIES]
    check(lines[0].split(",") == expected, f"CSV header {lines[0]!r}, expected {','.join(expected)}")
    return np.array([[float(v) if v else np.nan for v in line.split(",")] for line in lines[1:]])


def check_lean_images() -> None:
    """The gateway and fusion images have no TensorFlow, dlib or Whisper installed (their jobs below prove the
    code runs without them)."""
    probe = ("import importlib.util, sys; found = [m for m in ('tensorflow', 'dlib', 'faster_whisper', 'ctranslate2') "
             "if importlib.util.find_spec(m)]; print(found); sys.exit(1 if found else 0)")
    for service in ("gateway", "fusion"):
        found = compose("exec", "-T", service, "python", "-c", probe).strip()
        step(f"{service} image: heavy packages installed: {found}")


def check_full_job(gateway: Gateway, clip: Any, report: dict[str, Any]) -> str:
    step(f"a {CLIP_SECONDS:.0f} s synthetic clip (unseen story) through every modality")
    started = time.monotonic()
    job_id = gateway.submit(clip.video, subject=clip.subject)
    job = gateway.wait(job_id, timeout=900)
    report["job_containers_s"] = time.monotonic() - started
    check(job["state"] == "done", f"job ended {job['state']}: {json.dumps(job)}")
    bad = {m: s for m, s in job["modalities"].items() if s["status"] != "ok"}
    check(not bad and sorted(job["modalities"]) == sorted(MODALITIES), f"modalities not all ok: {bad or job}")
    rows = result_rows(gateway, job_id)
    n_frames = int(CLIP_SECONDS * 25)
    check(rows.shape[0] == n_frames, f"{rows.shape[0]} rows, expected 25 x {CLIP_SECONDS:.0f} = {n_frames}")
    check(bool(np.isfinite(rows[:, 0]).all()), "the fused curve has gaps")
    fused = ccc(read_labels(clip.labels), rows[:, 0])
    report["fused_ccc"] = fused
    step(f"job {job_id}: {rows.shape[0]} rows, every modality ok, fused CCC {fused:.3f} (floor {FUSED_CCC_FLOOR})")
    check(fused > FUSED_CCC_FLOOR, f"fused CCC {fused:.3f} <= floor {FUSED_CCC_FLOOR}")
    return job_id


# Lists the bucket with the credentials of the secret files, as the services do; prints the keys naming the job.
STORE_KEYS = (
    "import sys, boto3; from pathlib import Path; from shared.settings import get_settings; s = get_settings(); "
    "c = boto3.client('s3', endpoint_url=s.s3_endpoint_url, region_name=s.s3_region, "
    "aws_access_key_id=Path(s.s3_access_key_file).read_text().strip(), "
    "aws_secret_access_key=Path(s.s3_secret_key_file).read_text().strip()); "
    "pages = c.get_paginator('list_objects_v2').paginate(Bucket=s.s3_bucket); "
    "print('\\n'.join(o['Key'] for p in pages for o in p.get('Contents', []) if sys.argv[1] in o['Key']))"
)


def check_job_in_the_store(job_id: str) -> None:
    """The job's blobs are objects of the store, and no file of it stays on a container's disk (no shared volume)."""
    keys = compose("exec", "-T", "gateway", "python", "-c", STORE_KEYS, job_id).split()
    step(f"job {job_id} in the object store: {len(keys)} objects")
    check(bool(keys), f"no object of job {job_id} in the store")
    for service in ("gateway", "landmarks", "fusion"):
        left = compose("exec", "-T", service, "sh", "-c", f"find /data /tmp -name '*{job_id}*' 2>/dev/null; true")
        check(not left.strip(), f"{service} keeps files of job {job_id} on its disk: {left.strip()}")


def check_scaling(gateway: Gateway, clip: Any) -> None:
    scale = "docker compose up -d --wait --scale landmarks=2 --no-recreate"  # README's line
    step(scale)
    compose(*shlex.split(scale)[2:])
    replicas = containers("landmarks")
    check(len(replicas) == 2, f"expected 2 landmarks containers, got {replicas}")
    took: dict[str, int] = {}
    for _round in range(3):  # two jobs at a time, one task each: idle replicas take them (prefetch 1)
        jobs = [gateway.submit(clip.video, subject=clip.subject, modalities=["landmarks"]) for _ in range(2)]
        for job_id in jobs:
            job = gateway.wait(job_id, timeout=600)
            check(job["state"] == "done", f"landmarks job {job_id} ended {job['state']}: {job}")
            worker = redis_field(job_id, "landmarks.worker").split("@", 1)[-1]
            took[worker] = took.get(worker, 0) + 1
        if set(took) >= set(replicas):
            break
    step(f"landmarks tasks per container: {took}")
    check(set(took) == set(replicas), f"not every landmarks container took a task: {took} vs {sorted(replicas)}")


def check_killed_worker(gateway: Gateway, clip: Any) -> None:
    step("docker kill the landmarks container running a task: the task is delivered again")
    for _attempt in range(3):
        job_id = gateway.submit(clip.video, subject=clip.subject, modalities=["landmarks"])

        def running(job_id: str = job_id) -> bool:
            status = (gateway.status(job_id) or {}).get("modalities", {}).get("landmarks", {}).get("status")
            return status not in (None, "queued", *MODALITY_FINAL)

        wait_until(running, timeout=300, what="a landmarks worker to start the task", interval=0.2)
        holder = redis_field(job_id, "landmarks.worker").split("@", 1)[-1]
        replicas = containers("landmarks")
        check(holder in replicas, f"task held by {holder!r}, not one of {sorted(replicas)}")
        docker("kill", replicas[holder])
        job = gateway.wait(job_id, timeout=600)
        landmarks = job["modalities"]["landmarks"]
        finisher = redis_field(job_id, "landmarks.worker").split("@", 1)[-1]
        compose("up", "-d", "--wait", "--scale", "landmarks=2", "--no-recreate")  # the killed one back
        if landmarks.get("attempts", 1) == 1 and finisher == holder:
            step(f"job {job_id}: the task finished before the kill landed; once more")
            continue
        step(f"job {job_id}: {job['state']}, landmarks {landmarks['status']} after {landmarks.get('attempts', 1)} "
             f"deliveries: killed on {holder}, finished on {finisher}")
        check(job["state"] == "done" and landmarks["status"] == "ok", f"after the kill: {job}")
        check(landmarks.get("attempts", 1) >= 2 and finisher != holder, f"the task was not delivered again: {job}")
        return
    raise CheckFailed("three landmark tasks finished before their container could be killed: use a longer clip")


def check_redis_restart(gateway: Gateway, clip: Any) -> None:
    step("docker compose restart redis with accepted jobs: they finish")
    jobs = [gateway.submit(clip.video, subject=clip.subject, modalities=["landmarks"]) for _ in range(2)]
    before = [(gateway.status(job_id) or {}).get("state") for job_id in jobs]
    check(not set(FINAL_STATES) & set(before), f"the jobs finished before Redis restarted ({before}): nothing was tested")
    compose("restart", "redis")
    for job_id in jobs:
        job = gateway.wait(job_id, timeout=600)
        check(job["state"] == "done" and job["modalities"]["landmarks"]["status"] == "ok",
              f"job {job_id} after the Redis restart: {job}")
    step(f"jobs {', '.join(jobs)}: done after the restart")


def check_model_server_down(gateway: Gateway, clip: Any) -> None:
    step("docker compose stop face-serving: face fails with a reason, the job still ends")
    compose("stop", "face-serving")
    job_id = gateway.submit(clip.video, subject=clip.subject, modalities=["face", "landmarks"])
    job = gateway.wait(job_id, timeout=600)
    face = job["modalities"]["face"]
    step(f"job {job_id}: {job['state']}, face {face['status']}: {face.get('detail', '')[:160]}")
    check(job["state"] == "done" and face["status"] in ("failed", "unavailable") and face.get("detail"),
          f"with face-serving stopped: {job}")
    check(job.get("used") == ["landmarks"] and job.get("degraded") is True, f"fusion should use landmarks only: {job}")
    compose("start", "face-serving")


def run_local(clip: Any, models: Path, report: dict[str, Any]) -> None:
    """The same clip through `empathy up` (local processes, same models, same settings) for the table."""
    step("the same clip through `empathy up` on this machine (for the timing table)")
    port = free_port()
    key = "compose-test-local"
    work = Path(tempfile.mkdtemp(prefix="empathy-up-", dir=REPO / "var"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMPATHY_API_KEYS": f"local:{key}", "EMPATHY_LOG_LEVEL": "WARNING"}
    with (work / "up.log").open("wb") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "cli", "up", "--port", str(port), "--base-port", "0",
                                     "--models-dir", str(models.resolve()), "--storage-dir", str(work / "storage")],
                                    cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        gateway = Gateway(f"http://127.0.0.1:{port}", key)

        def ready() -> bool:
            check(launcher.poll() is None, f"empathy up exited: {(work / 'up.log').read_text()[-3000:]}")
            try:
                return gateway.get("/readyz").status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout=300, what="empathy up's /readyz", interval=1.0)
        started = time.monotonic()
        job = gateway.wait(gateway.submit(clip.video, subject=clip.subject), timeout=900)
        report["job_local_s"] = time.monotonic() - started
        check(job["state"] == "done", f"empathy up job: {job}")
        report["fused_ccc_local"] = ccc(read_labels(clip.labels), result_rows(gateway, job["id"])[:, 0])
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C: the launcher stops everything it started
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
        shutil.rmtree(work, ignore_errors=True)


def image_sizes() -> dict[str, int]:
    """Bytes of each image the stack runs (``docker compose config --images``, deduplicated)."""
    names = sorted(set(compose("config", "--images").split()))
    return {name: int(docker("image", "inspect", "-f", "{{.Size}}", name).strip()) for name in names}


def table(report: dict[str, Any]) -> str:
    def seconds(key: str) -> str:
        return f"{report[key]:.0f} s" if key in report else "not measured"

    rows = [
        ("model server", report.get("model_server", "?")),
        ("base image", report.get("base_image", "?")),
        ("build, cold (empty build cache)" if report.get("cold") else "build (first of this run, cache warm)",
         seconds("build_first_s")),
        ("build, warm (nothing changed)", seconds("build_warm_s")),
        ("`up -d --wait` to every service healthy", seconds("healthy_s")),
        (f"job, {CLIP_SECONDS:.0f} s clip, 5 modalities, in containers", seconds("job_containers_s")),
        ("job, same clip, `empathy up` on the host", seconds("job_local_s")),
        ("fused CCC vs ground truth, containers (floor)", f"{report['fused_ccc']:.3f} ({FUSED_CCC_FLOOR})"
         if "fused_ccc" in report else "not measured"),
        ("fused CCC vs ground truth, `empathy up`", f"{report['fused_ccc_local']:.3f}"
         if "fused_ccc_local" in report else "not measured"),
    ]
    rows += [(f"image `{name}`", f"{size / 1e6:.0f} MB") for name, size in sorted(report.get("images", {}).items())]
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["containers", "local"],
                        help="containers: the checks against the running stack; local: time `empathy up` on the "
                             "same clip and print the table (after `docker compose down -v`)")
    parser.add_argument("--gateway", default="", help="http://127.0.0.1:<published port> (containers)")
    parser.add_argument("--api-key", default="", help="a key of the stack's api_keys file (containers)")
    parser.add_argument("--models", type=Path, default=REPO / "models", help="models for `empathy up` (local)")
    parser.add_argument("--report", type=Path, default=REPO / "var/compose/report.json",
                        help="measures so far (scripts/test_compose.sh writes the build and up timings there)")
    args = parser.parse_args(argv)

    report: dict[str, Any] = json.loads(args.report.read_text()) if args.report.is_file() else {}
    clip = make_clip(REPO / "var/compose/clip")
    try:
        if args.what == "containers":
            check(bool(args.gateway and args.api_key), "containers needs --gateway and --api-key")
            report["model_server"] = docker("inspect", "-f", "{{.Config.Image}}",
                                            next(iter(containers("audio-serving").values()))).strip()
            real = report["model_server"].startswith("tensorflow/serving")
            step(f"model servers: {report['model_server']} "
                 f"({'TensorFlow Serving' if real else 'the project own model server, compose.offline.yml'})")
            report["images"] = image_sizes()
            check_lean_images()
            gateway = Gateway(args.gateway, args.api_key)
            ready = gateway.get("/readyz")
            check(ready.status_code == 200, f"/readyz {ready.status_code}: {ready.text[:500]}")
            check_job_in_the_store(check_full_job(gateway, clip, report))
            check_scaling(gateway, clip)
            check_killed_worker(gateway, clip)
            check_redis_restart(gateway, clip)
            check_model_server_down(gateway, clip)
            step("every container check passed")
        else:
            run_local(clip, args.models, report)
            text = table(report)
            args.report.with_suffix(".md").write_text(text + "\n")
            print(text, flush=True)
    finally:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except CheckFailed as exc:
        print(f"test-compose: FAILED: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
