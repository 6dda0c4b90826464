"""Word normalisation before the lexicon look-up, on recogniser-style text and on real recorded speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared import asr
from shared.lexicon import load_lexicons, tokenize, warriner_lexicon
from shared.media import read_audio
from shared.words import normalize, number_words

# A real voice: the channel-test recordings Debian's alsa-utils ships (scripts/setup.sh installs it).
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
SPOKEN = ("Front_Center", "Front_Left", "Rear_Right", "Side_Left")


@pytest.mark.parametrize(("text", "words"), [
    ("10", ["ten"]), ("4,", ["four"]), ("I have 2,500 friends", ["i", "have", "two", "thousand", "five", "hundred",
                                                                  "friends"]),
    ("3.5", ["three", "point", "five"]), ("21st", ["twenty", "first"]), ("12th", ["twelfth"]),
    ("30th", ["thirtieth"]), ("50%", ["fifty", "percent"]), ("$5", ["five"]),
    ("Don\u2019t", ["do", "not"]), ("I'm", ["i", "am"]), ("can't", ["can", "not"]), ("won't", ["will", "not"]),
    ("they're", ["they", "are"]), ("we've", ["we", "have"]), ("it's", ["it", "is"]), ("John's", ["john's"]),
    ("HAPPY!", ["happy"]), ("well-being", ["well", "being"]),
])
def test_normalize(text: str, words: list[str]) -> None:
    assert normalize(text) == words == tokenize(text)


def test_number_words() -> None:
    assert number_words(0) == ["zero"]
    assert number_words(1_000_017) == ["one", "million", "seventeen"]
    assert " ".join(number_words(987_654_321)) == ("nine hundred eighty seven million six hundred fifty four "
                                                  "thousand three hundred twenty one")


def test_numbers_and_contractions_now_reach_the_lexicons(tmp_path: Path) -> None:
    # Warriner et al.'s norms (the paper's lexicon) list spelled-out numbers and "not"; a few rows in its format
    norms = tmp_path / "warriner.csv"
    norms.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\nten,6.1,3.9,5.6\nfour,5.5,3.1,5.4\nnot,3.6,3.6,4.2\n"
                     "do,6.0,3.8,6.0\n")
    lexicon = warriner_lexicon(norms)
    for raw in ("10", "4", "don't"):  # as Whisper writes them: no lexicon row matches
        assert lexicon.lookup(raw.lower()) is None
        assert all(lexicon.lookup(word) is not None for word in tokenize(raw)), raw
    assert load_lexicons("nrc+vader", missing="zero").vectors(tokenize("No.")).any()  # case and punctuation


@pytest.mark.slow
def test_real_recorded_speech_is_recognised_and_normalised(tmp_path_factory: pytest.TempPathFactory) -> None:
    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([part for name in SPOKEN for part in (read_audio(ALSA_SOUNDS / f"{name}.wav"), gap)])
    words = asr.words_for_audio(audio, source="whisper",
                                whisper_model_dir=tmp_path_factory.getbasetemp() / "whisper-base")
    raw = [w.text for w in words]
    assert any(text != text.lower() or not text.isalpha() for text in raw)  # "Front," as Whisper writes it
    reference = [part.lower() for name in SPOKEN for part in name.split("_")]
    hypothesis = [t for w in words for t in tokenize(w.text)]
    assert asr.word_error_rate(reference, hypothesis) <= 0.125, (raw, hypothesis)
    assert all(t.isalpha() and t == t.lower() for t in hypothesis)
