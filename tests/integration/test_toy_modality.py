"""A sixth modality added without editing the project: one registry entry, one modality class, one model builder.

The toy modality (:mod:`tests.toy_modality`: mean brightness of the listener region, two Dense layers) is
declared by a plugin named in ``EMPATHY_MODALITY_PLUGINS``. It is trained through ``empathy train`` on the
session's synthetic data set into a temporary models directory, next to tiny untrained models of the five
built-in modalities (``empathy up`` serves every modality of the registry). Then, every part real:

* ``empathy analyze`` (one process) gives it a column and a curve, and fuses it (``paper`` preset: its weight 1);
* ``empathy up`` starts a worker on its queue and serves its model (``/readyz`` checks it); a job through the
  gateway (``empathy submit --wait``) comes back with its column, and fused;
* without the plugin the same commands refuse the modality (the plugin, not a leftover, is what adds it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.model_store import read_metadata, version_dir
from shared.ports import free_port
from tests.ensemble_support import (
    API_TOKENS,
    REPO,
    api_keys_env,
    export_tiny_model,
    redis_db,
    start_up,
    stop,
    wait_for,
    write_tiny_video,
)

pytestmark = pytest.mark.slow

TOY = "brightness"
PLUGIN = {"EMPATHY_MODALITY_PLUGINS": "tests.toy_modality"}
TRANSCRIPT = REPO / "tests" / "fixtures" / "transcribe_sample.json"
MODALITIES = ("audio", TOY)  # what the jobs ask for: one built-in modality fused with the toy
SECONDS = 10.0


def run_cli(*args: str, plugin: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m cli ...`` in a fresh process, with (or without) the toy plugin."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(PLUGIN if plugin else {})}
    if not plugin:
        env.pop("EMPATHY_MODALITY_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s at 64x48 whose brightness ramps up frame by frame, with a tone on the audio track."""
    return write_tiny_video(tmp_path_factory.mktemp("toy_clip") / "ramp.mp4", seconds=SECONDS)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Path, clip: Path) -> Path:
    """The toy trained by `empathy train` (its registry defaults: 3 epochs) + tiny models of the five built-ins."""
    models = tmp_path_factory.mktemp("toy") / "models"
    trained = run_cli("train", TOY, "--data", str(synthetic_dataset), "--models-dir", str(models))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"{TOY}: exported" in trained.stdout
    metadata = read_metadata(version_dir(models, TOY))
    assert metadata["inputs"] == {"brightness": {"shape": [None, 5, 1], "dtype": "float32"}}
    assert metadata["training"]["max_epochs"] == 3 and metadata["training"]["batch_size"] == 256
    export_tiny_model(models, "audio", clip)
    export_tiny_model(models, "text", clip, transcript=TRANSCRIPT)
    export_tiny_model(models, "face", clip)
    export_tiny_model(models, "landmarks", clip)
    export_tiny_model(models, "body", clip, params={"size": 16})
    return models


def check_result(document: dict, csv_text: str) -> None:
    """The toy's curve is in the result, its column in the CSV, and the fusion used it with a weight."""
    lines = csv_text.splitlines()
    header = lines[0].split(",")
    assert header == ["valence", "agreement", "band_low", "band_high", *MODALITIES]
    assert len(lines) == 1 + int(SECONDS * 25)
    toy = np.array([float(line.split(",")[header.index(TOY)] or "nan") for line in lines[1:]])
    assert np.isfinite(toy).all() and np.ptp(toy) > 0  # a curve that follows the video, not a constant
    assert document["modalities"][TOY]["status"] == "ok", document["modalities"]
    assert TOY in document["fusion"]["used"], document["fusion"]
    assert document["fusion"]["weights"][TOY] > 0 and document["fusion"]["method"] == "paper"


def test_the_plugin_is_what_adds_the_modality(clip: Path, tmp_path: Path) -> None:
    refused = run_cli("analyze", str(clip), "--modalities", TOY, "--out", str(tmp_path / "x.csv"), plugin=False,
                      timeout=120)
    assert refused.returncode == 2 and f"unknown modalities ['{TOY}']" in refused.stderr


def test_empathy_analyze_runs_and_fuses_the_toy_modality(models_dir: Path, clip: Path, tmp_path: Path) -> None:
    out, doc = tmp_path / "toy.csv", tmp_path / "toy.json"
    result = run_cli("analyze", str(clip), "--models-dir", str(models_dir), "--modalities", ",".join(MODALITIES),
                     "--fusion", "paper", "--out", str(out), "--json", str(doc), "--no-build")
    assert result.returncode == 0, result.stderr[-3000:]
    check_result(json.loads(doc.read_text()), out.read_text())


def test_the_ensemble_runs_and_fuses_the_toy_modality(models_dir: Path, clip: Path, redis_url: str,
                                                      tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), **PLUGIN, **api_keys_env()}
    log_path = tmp_path / "up.log"
    launcher = start_up(port, redis_url=redis_db(redis_url, 15), models_dir=models_dir,
                        storage_dir=tmp_path / "storage", env=env, log_path=log_path, cwd=REPO)
    try:
        import urllib.request

        def ready() -> bool:
            assert launcher.poll() is None, log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=300, interval=1.0, what="the ensemble's /readyz")
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            checks = json.loads(response.read())["checks"]
        assert checks[f"model:{TOY}"]["ready"], checks
        assert f"{TOY}-worker-1" in log_path.read_text()  # the supervisor started a worker on its queue

        out = tmp_path / "ensemble.csv"
        submitted = run_cli("submit", str(clip), "--gateway", url, "--api-key", API_TOKENS["alice"],
                            "--modalities", ",".join(MODALITIES), "--fusion", "paper", "--wait", "--poll", "0.5",
                            "--timeout", "300", "--out", str(out))
        assert submitted.returncode == 0, submitted.stderr[-3000:] + log_path.read_text()[-3000:]
        job_id = submitted.stdout.split("job ", 1)[1].split()[0]
        request = urllib.request.Request(f"{url}/v1/jobs/{job_id}/result",
                                         headers={"Authorization": f"Bearer {API_TOKENS['alice']}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            document = json.loads(response.read())
        check_result(document, out.read_text())
        from jobs.store import JobStore

        worker = JobStore.from_url(redis_db(redis_url, 15), ttl_s=600).raw(job_id)[f"{TOY}.worker"]
        assert worker.startswith(f"{TOY}-1@"), worker  # the worker `empathy up` started on the toy's queue
    finally:
        stop(launcher, timeout=120, sig=signal.SIGINT)  # what Ctrl-C does
    assert launcher.returncode == 0, log_path.read_text()[-5000:]
