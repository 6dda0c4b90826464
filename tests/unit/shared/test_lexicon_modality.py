"""The zero-training word-valence modality (VADER): what was said, as valence, with no training.

A clip with real recorded speech (Debian's alsa-utils voice) and a transcript of valenced words gives a curve
that follows them; words without valence (the voice's own "front", "center") give no curve and say why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.data import Word, write_transcript
from shared.modalities.lexicon import MODALITY as LEXICON
from shared.modalities.lexicon import prepare_valence, rated_words
from tests.real_media import astronaut, panned, speech, write_clip
from training.models.lexicon import build_model


def test_rated_words_carry_vaders_valence() -> None:
    rated = dict((w.text, v) for w, v in rated_words([Word("I", 0, 0.2), Word("love", 0.2, 0.5),
                                                      Word("this", 0.5, 0.7), Word("terrible", 0.7, 1.0)]))
    assert set(rated) == {"love", "terrible"}
    assert rated["love"] > 0.6 and rated["terrible"] < -0.5


def test_the_curve_follows_the_words_of_a_transcript(tmp_path: Path) -> None:
    video = write_clip(tmp_path / "talk.mp4", panned(astronaut()[:400, 100:420], 250), audio=speech(10))
    words = [Word(t, 0.5 * i, 0.5 * i + 0.4) for i, t in enumerate(
        "what a wonderful happy day I love it great fun".split() + ["and", "then"] +
        "the terrible sad awful accident hurt everyone badly".split())]
    write_transcript(tmp_path / "talk.json", words)
    windows = LEXICON.prepare(video, subject=0, transcript=tmp_path / "talk.json", params={})
    model = build_model({"valence": windows.inputs["valence"].shape[1:]})
    frames = LEXICON.to_frames(model.predict(windows.inputs["valence"], verbose=0), windows)
    early, late = np.nanmean(frames[25:125]), np.nanmean(frames[200:250])
    assert early > 0.3 and late < -0.3, (early, late)


def test_words_without_valence_are_unavailable_with_a_reason() -> None:
    windows = prepare_valence([Word("front", 0.1, 0.4), Word("center", 0.5, 0.9)], 50)
    assert len(windows) == 0 and windows.missing.all()
    assert "no word with a VADER valence" in windows.info["unavailable"]
