"""The whole ensemble, every part real: ``empathy up`` starts our gRPC model servers (one per modality), the
five modality workers and the fusion worker (Celery, real subprocesses) and the gateway under gunicorn,
on a real redis-server. A held-out synthetic video (a story no model trained on) goes in over HTTP with
``empathy submit --wait``; the result must cover every frame, carry every modality, and follow the ground
truth. ``empathy analyze`` on the same video, in one process, must give the same curve.

Models: tiny versions of the five architectures, trained once per session on the session's synthetic
set through the ordinary training API (:func:`gateway.bootstrap.build_default_models`); set
EMPATHY_TEST_MODELS to a directory holding all five to reuse them.

The clips are 20 s long. The ensemble runs with an explicit final cut-off (EMPATHY_FUSION_CUTOFF_HZ=0.1,
which the clip-length bound raises to 0.15 Hz: 3 cycles over 20 s) and the validation-CCC weights
(EMPATHY_FUSION_WEIGHTS=ccc), both documented settings; the fusion model fit by the bootstrap supplies the
calibrated band.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shared.data import read_labels
from shared.metrics import ccc
from shared.settings import MODALITIES
from tests.ensemble_support import API_TOKENS, REPO, api_keys_env, redis_db, wait_for

pytestmark = pytest.mark.slow

FUSED_CCC_THRESHOLD = 0.3
DURATION_S = 20.0

# Even smaller than the bundled models: this test checks the plumbing and that learning happened at all.
TINY_TRAINING = {
    "audio": {"hparams": {"gru_units": 16}, "epochs": 8},
    "text": {"hparams": {"lstm_units": 8}, "epochs": 20},
    "face": {"hparams": {"filters": [4, 8], "dense": [16, 8]}, "epochs": 6},
    "landmarks": {"hparams": {"filters": [16, 16, 16, 16], "dense": 8}, "epochs": 10},
    "body": {"hparams": {"depth": 10, "base_filters": 4, "head": [16, 8]}, "params": {"size": 48}, "epochs": 6},
}


@pytest.fixture(scope="session")
def ensemble_models(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Path) -> Path:
    existing = os.environ.get("EMPATHY_TEST_MODELS")
    if existing:
        return Path(existing)
    from gateway.bootstrap import build_default_models

    models_dir = tmp_path_factory.mktemp("ensemble") / "models"
    build_default_models(models_dir, data_dir=synthetic_dataset, overrides=TINY_TRAINING)
    return models_dir


@pytest.fixture(scope="session")
def held_out_clip(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from shared.synthetic import generate_clip

    return generate_clip(tmp_path_factory.mktemp("held_out"), subject=1, story=4, duration_s=DURATION_S,
                         width=640, height=360, seed=7)


def _get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_TOKENS['alice']}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""  # not listening (yet)


def test_the_ensemble_end_to_end(ensemble_models: Path, held_out_clip, redis_url: str,  # noqa: ANN001
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMPATHY_FUSION_WEIGHTS": "ccc",
           "EMPATHY_FUSION_CUTOFF_HZ": "0.1", "EMPATHY_LOG_LEVEL": "WARNING", **api_keys_env()}
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up", "--port", str(port), "--base-port", "0",
             "--redis-url", redis_db(redis_url, 6), "--models-dir", str(ensemble_models),
             "--storage-dir", str(tmp_path / "storage")],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: launcher.poll() is None and _get(f"{url}/readyz")[0] == 200, timeout=300, interval=1.0,
                 what="the ensemble's /readyz")
        ready = json.loads(_get(f"{url}/readyz")[1])
        assert all(ready["checks"][f"model:{m}"]["ready"] for m in MODALITIES)

        from gateway.cli import submit_main

        started = time.monotonic()
        out = tmp_path / "ensemble.csv"
        code = submit_main([str(held_out_clip.video), "--gateway", url, "--api-key", API_TOKENS["alice"],
                            "--subject", "1", "--wait", "--poll", "0.5", "--timeout", "900", "--out", str(out)])
        job_seconds = time.monotonic() - started
        assert code == 0, log_path.read_text()[-5000:]

        lines = out.read_text().splitlines()
        assert lines[0].split(",") == ["valence", "agreement", "band_low", "band_high", *MODALITIES]
        n_frames = int(DURATION_S * 25)
        assert len(lines) == 1 + n_frames
        rows = np.array([[float(v) if v else np.nan for v in line.split(",")] for line in lines[1:]])
        labels = read_labels(held_out_clip.labels)
        fused = rows[:, 0]
        assert np.isfinite(fused).all()
        assert ((rows[:, 1] >= 0) & (rows[:, 1] <= 1)).all()
        per_modality = {m: ccc(labels, np.nan_to_num(rows[:, 4 + i], nan=float(np.nanmean(rows[:, 4 + i]))))
                        for i, m in enumerate(MODALITIES)}
        fused_ccc = ccc(labels, fused)
        summary = (f"ensemble job {job_seconds:.1f} s; fused CCC {fused_ccc:.3f}; per modality "
                   + ", ".join(f"{m} {c:.3f}" for m, c in per_modality.items()))
        (tmp_path / "summary.txt").write_text(summary)
        for i, name in enumerate(MODALITIES):
            assert np.isfinite(rows[:, 4 + i]).any(), f"{name} column is empty"
        assert (rows[:, 2] < fused).all() and (rows[:, 3] > fused).all()  # the band around the fused curve
        assert fused_ccc > FUSED_CCC_THRESHOLD, summary

        # the JSON result and the plot of the same job
        job_id = capsys.readouterr().out.split("job ", 1)[1].split()[0]
        status, body = _get(f"{url}/v1/jobs/{job_id}/result")
        document = json.loads(body)
        assert status == 200 and document["n_frames"] == n_frames and document["subject"] == 1
        assert all(document["modalities"][m]["status"] == "ok" for m in MODALITIES), document["modalities"]
        assert document["fusion"]["weights_spec"] == "ccc" and document["fusion"]["cutoff_requested_hz"] == 0.1
        assert document["fusion"]["cutoff_hz"] == pytest.approx(0.15)  # 3 cycles over the 20 s clip
        assert document["fusion"]["model_version"] == 1 and document["band"]["coverage"] == 0.8
        status, png = _get(f"{url}/v1/jobs/{job_id}/plot.png")
        assert status == 200 and png[:4] == b"\x89PNG"
        (tmp_path / "ensemble.png").write_bytes(png)

        # the embedded mode (same pipeline, models in-process) gives the same curve
        from gateway.cli import analyze_main

        local = tmp_path / "local.csv"
        os.environ["EMPATHY_FUSION_WEIGHTS"], os.environ["EMPATHY_FUSION_CUTOFF_HZ"] = "ccc", "0.1"
        try:
            from shared.settings import get_settings

            get_settings.cache_clear()
            assert analyze_main([str(held_out_clip.video), "--subject", "1", "--models-dir", str(ensemble_models),
                                 "--out", str(local), "--no-build"]) == 0
        finally:
            del os.environ["EMPATHY_FUSION_WEIGHTS"], os.environ["EMPATHY_FUSION_CUTOFF_HZ"]
            get_settings.cache_clear()
        local_rows = np.array([[float(v) if v else np.nan for v in line.split(",")]
                               for line in local.read_text().splitlines()[1:]])
        assert np.allclose(local_rows[:, 0], fused, atol=1e-3)
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)  # what Ctrl-C does
            try:
                launcher.wait(timeout=120)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
    assert launcher.returncode == 0, log_path.read_text()[-5000:]
