"""Helpers shared by the ensemble's tests (gateway, Celery, integration): tiny real videos, settings, workers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from shared.settings import Settings, get_settings
from tests import REPO  # noqa: F401  (re-exported for the ensemble tests)


def write_tiny_video(path: Path, *, seconds: float = 2.0, fps: int = 25, audio: bool = True, video: bool = True,
                     noise: bool = False, options: dict[str, str] | None = None) -> Path:
    """A real H.264/AAC MP4 (64x48) made with PyAV: cheap to write, decodes like any upload.

    ``video=False``: the sound track alone (a ``.m4a``); ``noise``: random frames, which do not compress (a
    file cut in half then loses half of its frames); ``options``: the muxer's (``{"movflags": "faststart"}``).
    """
    with av.open(str(path), "w", options=options or {}) as container:
        picture = container.add_stream("libx264", rate=fps) if video else None
        sound = container.add_stream("aac", rate=16000) if audio else None
        if picture is not None:
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
            rng = np.random.default_rng(0)
            for i in range(int(seconds * fps)):
                pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) if noise else \
                    np.full((48, 64, 3), (i * 5) % 256, np.uint8)
                for packet in picture.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in picture.encode():
                container.mux(packet)
        if sound is not None:
            samples = (0.1 * np.sin(np.arange(int(seconds * 16000)) * 2 * np.pi * 220 / 16000)).astype(np.float32)
            for k in range(0, samples.size, 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, k:k + 1024], format="fltp", layout="mono")
                chunk.sample_rate = 16000
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def write_face_video(path: Path, *, n_frames: int = 100, face_frames: int = 50) -> Path:
    """A 320x320 video whose first ``face_frames`` frames show a real face (skimage's astronaut photo)
    and the rest black (no audio track): dlib finds the face in the first part only."""
    import cv2
    from skimage import data

    face = np.ascontiguousarray(cv2.resize(data.astronaut(), (320, 320)))
    black = np.zeros_like(face)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 320, 320, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(face if i < face_frames else black, format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


# Two clients of the gateway (tests only; real keys come from EMPATHY_API_KEYS_FILE).
API_TOKENS = {"alice": "alice-test-token-5f2c9a1e", "bob": "bob-test-token-0d7e3b64"}


def api_keys_env() -> dict[str, str]:
    """``EMPATHY_API_KEYS`` naming both test clients."""
    return {"EMPATHY_API_KEYS": ",".join(f"{name}:{token}" for name, token in API_TOKENS.items())}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[name]}"}


def redis_db(url: str, db: int) -> str:
    """The same Redis server on another database number, so test modules never see each other's queues."""
    return url.rsplit("/", 1)[0] + f"/{db}"


def ensemble_env(redis_url: str, storage_dir: Path, models_dir: Path, **extra: str) -> dict[str, str]:
    env = {"EMPATHY_REDIS_URL": redis_url, "EMPATHY_STORAGE_DIR": str(storage_dir),
           "EMPATHY_MODELS_DIR": str(models_dir)}  # every other setting at its default (the log level too)
    env.update(extra)
    return env


@contextmanager
def environment(values: dict[str, str]) -> Iterator[Settings]:
    """Set EMPATHY_* variables for code that reads :func:`get_settings` (tasks), restoring them after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def start_worker(queue: str, env: dict[str, str], *, name: str, log_path: Path,
                 own_group: bool = False) -> subprocess.Popen:
    """A real Celery worker subprocess on one queue (the services' own entry point).

    ``own_group``: the worker and its pool process get a process group of their own, so that
    :func:`kill_group` can kill the whole worker at once, as when its container dies.
    """
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    log = log_path.open("wb")
    return subprocess.Popen([sys.executable, "-m", "services.worker", queue, "--hostname", f"{name}@%h"],
                            cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=own_group)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a worker started with ``own_group=True`` and its pool processes: no warm shutdown, no ack."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def stop(process: subprocess.Popen, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Warm shutdown (SIGTERM; SIGINT is what Ctrl-C sends), then kill if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_up(port: int, *, redis_url: str, models_dir: Path, storage_dir: Path, env: dict[str, str],
             log_path: Path, cwd: Path) -> subprocess.Popen:
    """``empathy up`` on ``port`` with a test's own Redis database, models and storage; output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--port", str(port), "--base-port", "0", "--redis-url", redis_url,
             "--models-dir", str(models_dir), "--storage-dir", str(storage_dir)],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


class RedisServer:
    """A redis-server of a test's own, with append-only persistence like compose's and the launcher's,
    that the test can stop and start again on the same port and data directory."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listening, timeout=10, interval=0.05, what="redis-server listening")
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits (a restart, not a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout} s")


# --- tiny real models for ensemble tests ----------------------------------------------------------------
TINY_SUBJECT_STATS = {"1": {"mean": 0.2, "std": 0.2}, "2": {"mean": -0.1, "std": 0.3},
                      "global": {"mean": 0.05, "std": 0.25}}


def tiny_keras_model(inputs: dict[str, np.ndarray], n_outputs: int, *, seed: int = 0):  # noqa: ANN201
    """An untrained Keras model with exactly the given inputs (names, shapes, dtypes): pooled, one Dense layer.

    Enough for the plumbing (serving, workers, fusion): the predictions are real model outputs that vary
    with the input, computed by TensorFlow in the model server, just not trained.
    """
    import keras

    keras.utils.set_random_seed(seed)
    pools = {2: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling2D,
             4: keras.layers.GlobalAveragePooling3D}
    tensors, features = {}, []
    for name, array in inputs.items():
        shape = tuple(array.shape[1:])
        tensor = keras.Input(shape=shape, dtype=str(array.dtype), name=name)
        tensors[name] = tensor
        if not shape:  # an id (the subject): embedded
            features.append(keras.layers.Embedding(16, 2)(tensor))
        elif len(shape) == 1:
            features.append(tensor)
        else:
            features.append(pools[len(shape)]()(tensor))
    joined = features[0] if len(features) == 1 else keras.layers.Concatenate()(features)
    return keras.Model(inputs=tensors, outputs=keras.layers.Dense(n_outputs)(joined))


def export_tiny_model(models_dir: Path, modality: str, sample_video: Path, *, transcript: Path | None = None,
                      params: dict | None = None, rename_inputs: dict[str, str] | None = None,
                      seed: int = 0) -> Path:
    """Publish a tiny untrained model of ``modality`` under ``models_dir`` like the trainer does.

    The inputs are those the modality's real ``prepare`` produces on ``sample_video`` (so the workers'
    preprocessing feeds it unchanged); ``rename_inputs`` builds a deliberately *wrong* model whose
    signature the workers' inputs do not match.
    """
    from serving.model_store import publish_version, staging_dir
    from shared.modalities.base import get_modality

    module = get_modality(modality)
    preprocessing = {**module.default_params(), **(params or {}), "known_subjects": [1, 2]}
    windows = module.prepare(sample_video, subject=1, transcript=transcript, params=preprocessing)
    inputs = {(rename_inputs or {}).get(name, name): np.asarray(array[:1]) if len(array) else
              np.zeros((1, *array.shape[1:]), dtype=array.dtype) for name, array in windows.inputs.items()}
    n_outputs = int(np.shape(windows.label_frames)[1]) if np.ndim(windows.label_frames) == 2 else 1
    model = tiny_keras_model(inputs, n_outputs, seed=seed)
    staging = staging_dir(models_dir, modality)
    model.export(str(staging), format="tf_saved_model", verbose=False)
    metadata = {"inputs": {name: {"shape": [None, *array.shape[1:]], "dtype": str(array.dtype)}
                           for name, array in inputs.items()},
                "output": "output_0", "preprocessing": preprocessing, "cutoff_hz": 1.0, "val_ccc": 0.5,
                "val_ccc_filtered": 0.5, "subject_stats": TINY_SUBJECT_STATS, "known_subjects": [1, 2]}
    return publish_version(staging, models_dir, modality, metadata)
