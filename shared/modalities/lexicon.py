"""Word valence modality (zero training): the VADER valence of the recognised words, averaged over the last few.

The words come exactly as for the text modality (transcript, Whisper or pocketsphinx; :class:`TextModality`'s
source and settings). Each word VADER rates (its mean human valence rating, -4..4, divided by 4: ``good``
+0.48, ``sad`` -0.53, ``terrible`` -0.78; unrated words carry no valence and are skipped) ends a window of the
last ``window_words`` rated words; the model (``training/models/lexicon.py``, built by
``python -m training.zero_training``) averages them. A frame takes the window of the last rated word heard so
far, so the curve follows the valence of what was said. No training: its output is valence already, never
re-scaled, and no rated word at all makes it ``unavailable``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.data import Word
from shared.lexicon import vader_lexicon
from shared.modalities.base import Windows
from shared.modalities.text import TextModality, recognise_words, tokens_with_times
from shared.settings import Settings

INPUT_VALENCE = "valence"


def default_params() -> dict[str, Any]:
    """Rates and how many rated words a window averages (5: about the last sentence's sentiment words)."""
    defaults = Settings()
    return {"fps": defaults.fps, "sample_rate": defaults.sample_rate, "window_words": 5}


def rated_words(words: Sequence[Word]) -> list[tuple[Word, float]]:
    """Each token VADER rates, with its valence in [-1, 1], in order."""
    vader = vader_lexicon()
    out = []
    for token in tokens_with_times(words):
        entry = vader.lookup(token.text)
        if entry is not None:
            out.append((token, float(entry[0])))
    return out


def prepare_valence(words: Sequence[Word], n_frames: int, params: dict[str, Any] | None = None) -> Windows:
    """Windows (n, window_words) of the last rated words' valences, left-padded with the first one."""
    p = {**default_params(), **(params or {})}
    length, fps = int(p["window_words"]), float(p["fps"])
    rated = rated_words(words)
    if not rated:
        return Windows(inputs={INPUT_VALENCE: np.zeros((0, length), np.float32)}, label_frames=np.zeros(0, np.int64),
                       n_frames=n_frames, missing=np.ones(n_frames, dtype=bool),
                       info={"unavailable": "lexicon: nothing usable in this video: no word with a VADER valence "
                                            "was recognised"})
    values = np.array([v for _, v in rated], np.float32)
    padded = np.concatenate([np.full(length - 1, values[0], np.float32), values])
    windows = np.lib.stride_tricks.sliding_window_view(padded, length).copy()
    ends = np.array([min(max(int(math.ceil(w.end * fps)), 1), n_frames) - 1 for w, _ in rated], np.int64)
    return Windows(inputs={INPUT_VALENCE: windows}, label_frames=ends, n_frames=n_frames,
                   info={"rated_words": [w.text for w, _ in rated]})


class LexiconModality(TextModality):
    """Words as for the text modality; windows of rated-word valences; frames hold the last word's window."""

    name = "lexicon"

    def default_params(self) -> dict[str, Any]:
        return default_params()

    def settings_params(self, settings: Settings) -> dict[str, Any]:
        return {"fps": settings.fps, "sample_rate": settings.sample_rate}

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        p = {**default_params(), **(params or {})}
        words, source, n_frames = recognise_words(video, transcript, p)
        windows = prepare_valence(words, n_frames, p)
        windows.info["asr_source"] = source
        return windows

    def fit_params(self, windows: list[Windows], params: dict[str, Any]) -> dict[str, Any]:
        return params


MODALITY = LexiconModality()
