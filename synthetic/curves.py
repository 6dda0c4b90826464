"""Ground-truth valence: one curve per story (what the storyteller conveys) and one per listener.

A story's curve is a sum of slow drifts and faster swings, squashed into [-1, 1]; it is a function of
time only, so a shorter clip is a prefix of a longer one. Each listener reacts to the story with a
subject-specific mean offset, scale and lag (so per-subject re-scaling matters, as in OMG-Empathy), plus a
little personal drift. The annotation adds joystick-like high-frequency noise on top, as the real labels have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FPS = 25

# Stream tags so that every random draw has its own reproducible generator.
_STORY, _SUBJECT, _ANNOTATION, _PERSONAL = 1, 2, 3, 4


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined by the data-set seed and the given keys (subject, story, purpose...)."""
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def frame_times(n_frames: int, fps: int = FPS) -> np.ndarray:
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    return np.arange(n_frames, dtype=np.float64) / fps


def _sinusoids(rng: np.random.Generator, n: int, f_lo: float, f_hi: float, a_lo: float, a_hi: float):
    freqs = rng.uniform(f_lo, f_hi, n)
    amps = rng.uniform(a_lo, a_hi, n)
    phases = rng.uniform(0.0, 2.0 * np.pi, n)
    return freqs, amps, phases


def story_curve_at(story: int, t: np.ndarray, seed: int) -> np.ndarray:
    """The story's emotional arc at times ``t`` (seconds), in (-1, 1)."""
    rng = rng_for(seed, _STORY, story)
    slow = _sinusoids(rng, 3, 0.01, 0.05, 0.3, 0.55)
    fast = _sinusoids(rng, 3, 0.08, 0.25, 0.08, 0.18)
    t = np.asarray(t, dtype=np.float64)
    x = np.zeros_like(t)
    norm = 0.0
    for freqs, amps, phases in (slow, fast):
        for f, a, p in zip(freqs, amps, phases, strict=True):
            x += a * np.sin(2.0 * np.pi * f * t + p)
            norm += a * a
    return np.tanh(1.2 * x / np.sqrt(norm))


@dataclass(frozen=True)
class Listener:
    """How one subject reacts to any story: shared by all stories so it can be learned from training ones."""

    offset: float  # added to every story's valence: this listener's baseline mood
    scale: float  # how strongly the listener follows the story
    lag_s: float  # reaction delay behind the storyteller (s)


def listener(subject: int, seed: int) -> Listener:
    rng = rng_for(seed, _SUBJECT, subject)
    return Listener(
        offset=float(rng.uniform(-0.35, 0.35)),
        scale=float(rng.uniform(0.45, 0.95)),
        lag_s=float(rng.uniform(0.4, 1.6)),
    )


def expressed_valence(subject: int, story: int, n_frames: int, seed: int) -> np.ndarray:
    """The listener's true valence per frame: what the rendered face and body show (no annotation noise)."""
    t = frame_times(n_frames)
    who = listener(subject, seed)
    rng = rng_for(seed, _PERSONAL, subject, story)
    f, a, p = _sinusoids(rng, 1, 0.02, 0.06, 0.05, 0.1)
    personal = a[0] * np.sin(2.0 * np.pi * f[0] * t + p[0])
    reaction = who.offset + who.scale * story_curve_at(story, t - who.lag_s, seed) + personal
    return np.clip(reaction, -1.0, 1.0)


def valence_curve(subject: int, story: int, n_frames: int, seed: int) -> np.ndarray:
    """The annotated ground truth (the CSV): expressed valence plus small joystick-like noise, in [-1, 1]."""
    clean = expressed_valence(subject, story, n_frames, seed)
    rng = rng_for(seed, _ANNOTATION, subject, story)
    noise = rng.normal(0.0, 0.02, n_frames)
    noise = np.convolve(noise, np.ones(3) / 3.0, mode="same")
    return np.clip(clean + noise, -1.0, 1.0).astype(np.float32)
