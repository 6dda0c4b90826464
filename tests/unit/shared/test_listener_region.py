"""The listener region on the real recording layout: 2560x720, storyteller left (larger face), listener right.

Faces are real photographs shipped inside installed packages: the listener is scikit-image's astronaut
(Eileen Collins), the storyteller matplotlib's Grace Hopper portrait.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from shared.crops import OMG_LISTENER, listener_region, parse_listener_spec, region_for_video
from shared.face_tracking import FaceTracker, TrackerConfig, detect_faces
from shared.media import iter_frames
from shared.modalities.base import get_modality
from shared.modalities.frame_stream import listener_frames
from synthetic.dataset import generate_clip

FRAMES = 50  # 2 s


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One clip in the OMG layout (2560x720) and the same listener alone at 1280x720."""
    root = tmp_path_factory.mktemp("layouts")
    omg = generate_clip(root / "omg", 1, 1, duration_s=FRAMES / 25, width=2560, height=720, layout="omg")
    single = generate_clip(root / "single", 1, 1, duration_s=FRAMES / 25, width=1280, height=720)
    return {"omg": omg.video, "single": single.video}


def test_listener_specs() -> None:
    assert listener_region("auto", 1, 2560, 720).box == OMG_LISTENER == (1080 / 2560, 0.0, 1.0, 1.0)
    assert "official OMG-Empathy split" in listener_region("", 3, 2560, 720).note
    assert listener_region("auto", 1, 1280, 720).box is None
    assert listener_region("full", 1, 2560, 720).box is None
    per_subject = "2=0.5,0,1,1;*=full"
    assert listener_region(per_subject, 2, 2560, 720).box == (0.5, 0.0, 1.0, 1.0)
    assert listener_region(per_subject, 1, 2560, 720).box is None
    for bad in ("0.6,0,0.5,1", "x=auto", "1=left"):
        with pytest.raises(ValueError):
            parse_listener_spec(bad)
    # a model trained on 2560x720 with the left half as listener uses it on 2560x720, not on other sizes
    trained = {"listener_region": "0,0,0.5,1", "listener_layouts": ["2560x720"], "listener": "auto"}
    assert region_for_video(trained, 1, 2560, 720).box == (0.0, 0.0, 0.5, 1.0)
    assert region_for_video(trained, 1, 1280, 720).box is None
    assert region_for_video({**trained, "listener": "full"}, 1, 2560, 720).box is None  # the job's choice wins


def _astronaut_frame(face_px: float) -> np.ndarray:
    """A 2560x720 grey frame with the astronaut photo scaled so her face box is ``face_px`` tall, at x = 1300."""
    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    box = detect_faces(grey)[0]
    scale = face_px / (box[3] - box[1])
    photo = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    frame = np.full((720, 2560), 90, np.uint8)
    photo = photo[:720, :1200]
    frame[:photo.shape[0], 1300:1300 + photo.shape[1]] = photo
    return frame


# The smallest faces found in the listener region of a 2560x720 frame (docs/architecture.md): the astronaut's
# face at 55 px (dlib reports its smallest box, ~73 px, around it); at 50 px it is no longer found.
@pytest.mark.parametrize("face_px", [170, 100, 80, 55])
def test_faces_down_to_55_px_are_found_in_the_listener_region(face_px: int) -> None:
    frame = _astronaut_frame(face_px)
    x0, y0, x1, y1 = listener_region("auto", 1, 2560, 720).pixels(2560, 720)
    boxes = detect_faces(frame[y0:y1, x0:x1])  # a view of the frame, as a cut region may be
    assert len(boxes) >= 1
    face = boxes[np.argmin([abs((b[0] + b[2]) / 2 + x0 - (1300 + 223 * face_px / 88)) for b in boxes])]
    assert 0.8 * face_px <= face[3] - face[1] <= max(1.2 * face_px, 80)
    if face_px == 170:  # what the old default did: the whole frame shrunk to 640 px wide loses it
        assert len(detect_faces(frame, detect_width=640, min_face_px=4 * 80)) == 0


def test_a_50_px_face_is_below_what_the_detector_finds() -> None:
    frame = _astronaut_frame(50)
    x0, y0, x1, y1 = listener_region("auto", 1, 2560, 720).pixels(2560, 720)
    assert len(detect_faces(frame[y0:y1, x0:x1])) == 0


def test_the_storyteller_is_the_larger_face_of_the_omg_frame(clips: dict[str, Path]) -> None:
    frame = next(iter_frames(clips["omg"], gray=True))
    assert frame.shape == (720, 2560)
    boxes = detect_faces(frame)
    assert len(boxes) == 2
    largest, other = boxes
    assert (largest[0] + largest[2]) / 2 < 1080 <= (other[0] + other[2]) / 2  # storyteller left, listener right
    assert largest[3] - largest[1] > 1.2 * (other[3] - other[1])


def test_every_vision_module_analyses_the_listener_in_the_omg_layout(clips: dict[str, Path]) -> None:
    """Face crops, landmark windows and body windows from 2560x720 match those from the listener alone."""
    for name in ("face", "landmarks", "body"):
        modality = get_modality(name)
        params = {**modality.default_params(), "listener": "auto"}
        omg = modality.prepare(clips["omg"], subject=1, params=params)
        single = modality.prepare(clips["single"], subject=1, params=params)
        assert any("official OMG-Empathy split" in n for n in omg.info["notes"]), name
        assert not any("ambiguous" in n for n in omg.info["notes"]), name
        assert not omg.missing.any() and len(omg) == len(single), name
        key = next(iter(omg.inputs))
        a = omg.inputs[key].features.astype(np.float64)  # per-frame crops / points before normalisation
        b = single.inputs[key].features.astype(np.float64)
        if name == "landmarks":  # pixels of the region: the listener sits 1280 - 1080 = 200 px further right
            a[:, 0::2] -= 200
            assert float(np.median(np.abs(a - b))) < 2.0, name
        else:  # grey crops of the same person: far closer than the storyteller's crops are
            teller = modality.prepare(clips["omg"], subject=1, params={**params, "listener": "0,0,0.42,1"})
            c = teller.inputs[key].features.astype(np.float64)
            assert float(np.mean(np.abs(a - b))) < 0.5 * float(np.mean(np.abs(c - b))), name
    body = get_modality("body").prepare(clips["omg"], subject=1, params={**get_modality("body").default_params(),
                                                                         "listener": "auto"})
    assert body.info["crop"][0] >= 1080 / 2560  # the body crop is the listener's


def test_a_whole_frame_region_is_ambiguous_and_follows_one_face_throughout(clips: dict[str, Path]) -> None:
    region = listener_region("full", 1, 2560, 720)
    tracker = FaceTracker(TrackerConfig())
    centres = []
    for grey in listener_frames(clips["omg"], region.box):
        seen = tracker.update(grey)
        assert not seen.missing
        centres.append((seen.box[0] + seen.box[2]) / 2)
    assert max(centres) < 1080 or min(centres) >= 1080  # never switches person
    assert "listener ambiguous: 2 faces" in tracker.ambiguity()
    face = get_modality("face")
    windows = face.prepare(clips["omg"], subject=1, params={**face.default_params(), "listener": "full"})
    assert any("listener ambiguous" in n for n in windows.info["notes"])
    body = get_modality("body")  # the body crop follows the same person as the face tracker
    crop = body.prepare(clips["omg"], subject=1, params={**body.default_params(), "listener": "full"}).info["crop"]
    assert ((crop[0] + crop[2]) / 2 * 2560 < 1080) == (max(centres) < 1080)


def test_no_face_in_the_listener_region_says_which_region_was_searched(clips: dict[str, Path]) -> None:
    face = get_modality("face")
    # the storyteller's half only has a face; a region of the listener's wall alone has none
    windows = face.prepare(clips["omg"], subject=1, params={**face.default_params(), "listener": "0.9,0,1,0.3"})
    assert windows.missing.all()
    assert windows.info["unavailable"] == ("face: nothing usable in this video: no face found in the listener "
                                           "region (x 2304-2560, y 0-216 of the 2560x720 frame); set the listener "
                                           "region if the listener is elsewhere")


def test_training_records_the_data_sets_listener_region_and_layouts(clips: dict[str, Path]) -> None:
    from shared.data import discover
    from shared.settings import load_settings
    from training.trainer import listener_params

    settings = load_settings({"EMPATHY_LISTENER_CROP": "1=0.5,0,1,1;*=auto"})
    params = listener_params(discover(clips["omg"].parents[1]), settings.listener_crop)
    assert params == {"listener_region": "1=0.5,0,1,1;*=auto", "listener_layouts": ["2560x720"]}
    inference = {**params, "listener": "auto"}  # what a job without its own region sends
    assert region_for_video(inference, 1, 2560, 720).box == (0.5, 0.0, 1.0, 1.0)
    assert "as in the models' training data" in region_for_video(inference, 1, 2560, 720).note
    assert region_for_video(inference, 2, 2560, 720).box == OMG_LISTENER
