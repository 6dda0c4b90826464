"""The storyteller's voice: espeak-ng words whose choice and prosody follow the story's valence.

Words are synthesised one at a time (``espeak-ng --stdout``), trimmed of silence and placed on the timeline by
us, so every word's start and end are known exactly and go into the transcript. When the story is positive the
storyteller uses more positive lexicon words, speaks higher, faster and louder; when negative, the opposite.
The speech depends on the story and the seed only: the same story told to every listener, as in OMG-Empathy.
"""

from __future__ import annotations

import io
import logging
import math
import shutil
import struct
import subprocess
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly

from shared.data import Word
from synthetic.curves import rng_for, story_curve_at

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
VOICE = "en-us"
_SPEECH = 6  # rng stream tag

# In VADER with valence >= 1.5 and tagged 'positive' (not 'negative') in NRC; checked by tests/unit/synthetic/test_synthetic.py.
POSITIVE_WORDS: tuple[str, ...] = (
    "happy", "wonderful", "love", "beautiful", "joy", "smile", "laugh", "delight", "good", "friendly",
    "kind", "lovely", "sweet", "hope", "excellent", "fun", "glad", "proud", "gift", "peace", "success",
    "cheerful", "perfect", "honest", "pleasant", "enjoy", "comfort", "beauty",
)
# In VADER with valence <= -1.5 and tagged 'negative' (not 'positive') in NRC.
NEGATIVE_WORDS: tuple[str, ...] = (
    "terrible", "hate", "ugly", "pain", "cry", "angry", "awful", "bad", "horrible", "fear", "lonely",
    "sick", "hurt", "death", "kill", "broken", "war", "grief", "disaster", "guilty", "cruel", "sorrow",
    "miserable", "tragic", "danger", "enemy", "upset", "violent", "hopeless", "evil",
)
# In neither lexicon: they carry no valence of their own.
NEUTRAL_WORDS: tuple[str, ...] = (
    "the", "and", "then", "we", "went", "to", "a", "house", "on", "street", "with", "my", "old", "car",
    "in", "morning", "after", "that", "there", "was", "table", "door", "window", "road", "near", "city",
    "day", "it", "of", "at", "by", "for", "from", "into", "some", "this", "they", "she", "he", "walked",
    "looked", "said", "next", "around", "back", "later",
)


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class Speech:
    """A story's voice track (float32 mono at :data:`SAMPLE_RATE`) and its words with exact times."""

    audio: np.ndarray
    words: tuple[Word, ...]


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechError(
            "espeak-ng is not installed; the synthetic storyteller needs it (Debian/Ubuntu: apt-get install espeak-ng)"
        )
    return path


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """PCM16 mono samples of espeak's stdout WAV, whose size fields are placeholders (it streams)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechError(f"espeak-ng did not write a WAV file ({len(data)} bytes)")
    stream = io.BytesIO(data)
    stream.seek(12)
    rate = 0
    while True:
        header = stream.read(8)
        if len(header) < 8:
            raise SpeechError("espeak-ng WAV has no data chunk")
        chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk == b"fmt ":
            fmt = stream.read(size)
            channels, rate, bits = struct.unpack("<H", fmt[2:4])[0], struct.unpack("<I", fmt[4:8])[0], struct.unpack("<H", fmt[14:16])[0]
            if channels != 1 or bits != 16:
                raise SpeechError(f"espeak-ng WAV is {channels} channels / {bits} bits, expected mono 16-bit")
        elif chunk == b"data":
            payload = stream.read()
            payload = payload[: len(payload) - len(payload) % 2]
            return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0, rate
        else:
            stream.seek(size, io.SEEK_CUR)


def _trim(samples: np.ndarray, rate: int) -> np.ndarray:
    """Cut espeak's leading/trailing silence so the word's span is where it is audible."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak == 0.0:
        raise SpeechError("espeak-ng produced silence")
    loud = np.nonzero(np.abs(samples) > 0.02 * peak)[0]
    margin = int(0.005 * rate)
    return samples[max(0, loud[0] - margin) : loud[-1] + margin + 1]


@lru_cache(maxsize=4096)
def synthesize_word(word: str, pitch: int, rate: int) -> np.ndarray:
    """One word at espeak pitch ``pitch`` (0-99) and ``rate`` (words/min), 16 kHz, peak 1, silence trimmed."""
    command = [espeak_binary(), "--stdout", "-v", VOICE, "-p", str(pitch), "-s", str(rate), "--", word]
    try:
        result = subprocess.run(command, capture_output=True, check=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        raise SpeechError(f"espeak-ng failed on {word!r}: {exc.stderr.decode(errors='replace').strip()}") from exc
    samples, source_rate = _parse_wav(result.stdout)
    samples = _trim(samples, source_rate)
    g = math.gcd(SAMPLE_RATE, source_rate)
    samples = resample_poly(samples, SAMPLE_RATE // g, source_rate // g).astype(np.float32)
    samples /= max(1e-6, float(np.max(np.abs(samples))))
    # Read-only so the shared cached array can never be modified by a caller.
    samples.setflags(write=False)
    return samples


def prosody(valence: float) -> tuple[int, int, float]:
    """(espeak pitch, espeak rate, gain) for the story's valence; quantised so words can be cached."""
    pitch = int(5 * round((50 + 30 * valence) / 5))
    rate = int(10 * round((170 + 40 * valence) / 10))
    gain = 0.45 * (1.0 + 0.3 * valence)
    return pitch, rate, gain


def choose_word(valence: float, rng: np.random.Generator) -> str:
    """More, and more often, lexicon words of the story's polarity the stronger its valence."""
    p_emotional = 0.1 if abs(valence) < 0.15 else min(0.85, 0.2 + 0.8 * abs(valence))
    if rng.random() < p_emotional:
        pool = POSITIVE_WORDS if valence > 0 else NEGATIVE_WORDS
    else:
        pool = NEUTRAL_WORDS
    return pool[int(rng.integers(len(pool)))]


@lru_cache(maxsize=16)
def story_speech(story: int, duration_s: float, seed: int) -> Speech:
    """The storyteller's track of ``story``: a shorter duration gives a prefix of a longer one."""
    rng = rng_for(seed, _SPEECH, story)
    n_samples = round(duration_s * SAMPLE_RATE)
    audio = np.zeros(n_samples, dtype=np.float32)
    words: list[Word] = []
    last_end = n_samples - int(0.05 * SAMPLE_RATE)
    t = float(rng.uniform(0.3, 0.8))
    while True:
        for _ in range(int(rng.integers(4, 10))):
            valence = float(story_curve_at(story, np.array([t]), seed)[0])
            word = choose_word(valence, rng)
            pitch, rate, gain = prosody(valence)
            wav = synthesize_word(word, pitch, rate)
            start = round(t * SAMPLE_RATE)
            end = start + wav.size
            if end > last_end:
                audio.setflags(write=False)
                return Speech(audio=audio, words=tuple(words))
            audio[start:end] += gain * wav
            words.append(Word(text=word, start=start / SAMPLE_RATE, end=end / SAMPLE_RATE))
            t = end / SAMPLE_RATE + float(rng.uniform(0.05, 0.15))
        t += float(rng.uniform(0.3, 0.8))
        if rng.random() < 0.12:
            t += float(rng.uniform(1.5, 3.0))  # the storyteller pauses: stretches without speech
