"""Whole clips and data sets: labels, transcript and the MP4 of each subject/story, in the OMG-Empathy layout."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from shared.data import Clip, clip_name, write_labels, write_transcript
from shared.settings import Settings
from synthetic.curves import FPS, expressed_valence, listener, rng_for, valence_curve
from synthetic.render import FrameRenderer
from synthetic.speech import SAMPLE_RATE, espeak_binary, story_speech
from synthetic.storyteller import STORYTELLER_FACE_SCALE, StorytellerRenderer, loudness_per_frame
from synthetic.writer import ClipWriter

logger = logging.getLogger(__name__)

SINGLE = "single"  # the listener alone
OMG = "omg"  # storyteller left, listener right, side by side (the real recordings: 2560x720)
LAYOUTS = (SINGLE, OMG)
ROOM_NOISE = 0.003  # std of the microphone's background hiss
_AUDIO = 7  # rng stream tag
MANIFEST = "synthetic.json"
# x264 preset when the caller gives none: EMPATHY_SYNTH_X264_PRESET's documented default (``empathy synth``
# and the model builder pass the setting's value)
DEFAULT_PRESET: str = Settings.synth_x264_preset


def _check_args(duration_s: float, width: int, height: int) -> int:
    if not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    n_frames = round(duration_s * FPS)
    if abs(n_frames - duration_s * FPS) > 1e-6:
        raise ValueError(f"duration_s={duration_s} is not a whole number of 25 fps frames")
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even (yuv420p), got {width}x{height}")
    return n_frames


def generate_clip(
    out_dir: str | Path,
    subject: int,
    story: int,
    *,
    duration_s: float = 30.0,
    width: int = 640, height: int = 360,  # frame size (px)
    seed: int = 0,
    preset: str | None = None,
    layout: str = SINGLE,
) -> Clip:
    """Write Videos/, Annotations/ and Transcripts/ files of one clip under ``out_dir``.

    ``layout`` ``single``: the listener alone, ``width`` x ``height``. ``omg``: the real recordings' side by
    side frame, storyteller (another real face, larger, talking) in the left half and in the right half
    exactly the listener panel a ``single`` clip of half the width would show (so the two compare 1:1).
    """
    if subject < 1 or story < 1:
        raise ValueError(f"subject and story numbers start at 1, got subject={subject} story={story}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    n_frames = _check_args(duration_s, width, height)
    if layout == OMG and width % 4:
        raise ValueError(f"the omg layout needs a width divisible by 4 (two even halves), got {width}")
    root = Path(out_dir)
    name = clip_name(subject, story)
    video = root / "Videos" / f"{name}.mp4"
    labels_path = root / "Annotations" / f"{name}.csv"
    transcript_path = root / "Transcripts" / f"{name}.json"

    expressed = expressed_valence(subject, story, n_frames, seed)
    speech = story_speech(story, n_frames / FPS, seed)
    noise = rng_for(seed, _AUDIO, subject, story).normal(0.0, ROOM_NOISE, speech.audio.size)
    audio = np.clip(speech.audio + noise.astype(np.float32), -1.0, 1.0)
    samples_per_frame = SAMPLE_RATE // FPS

    preset = preset or DEFAULT_PRESET
    listener_width = width // 2 if layout == OMG else width
    renderer = FrameRenderer(listener_width, height, subject=subject, story=story, seed=seed)
    storyteller = loudness = None
    if layout == OMG:
        storyteller = StorytellerRenderer(listener_width, height, face_px=STORYTELLER_FACE_SCALE * renderer.sprite.face_px,
                                          story=story, seed=seed)
        loudness = loudness_per_frame(speech.audio, n_frames, samples_per_frame)
    partial = video.with_name(video.name + ".part")
    try:
        with ClipWriter(partial, width, height, sample_rate=SAMPLE_RATE, preset=preset) as writer:
            for i in range(n_frames):
                frame = renderer.render(float(expressed[i]), i)
                if storyteller is not None and loudness is not None:
                    frame = np.concatenate([storyteller.render(float(loudness[i])), frame], axis=1)
                writer.write_frame(frame)
                writer.write_audio(audio[i * samples_per_frame : (i + 1) * samples_per_frame])
        os.replace(partial, video)
    finally:
        partial.unlink(missing_ok=True)
    write_labels(labels_path, valence_curve(subject, story, n_frames, seed))
    write_transcript(transcript_path, speech.words)
    return Clip(subject=subject, story=story, video=video.resolve(), labels=labels_path.resolve(),
                transcript=transcript_path.resolve())


def _clip_job(args: tuple[str, int, int, float, int, int, int, str, str]) -> tuple[Clip, float]:
    out_dir, subject, story, duration_s, width, height, seed, preset, layout = args
    started = time.perf_counter()
    clip = generate_clip(out_dir, subject, story, duration_s=duration_s, width=width, height=height, seed=seed,
                         preset=preset, layout=layout)
    return clip, time.perf_counter() - started


def generate_dataset(
    out_dir: str | Path,
    *,
    subjects: Sequence[int] = (1, 2, 3, 4),
    stories: Sequence[int] = (1, 2, 3),
    duration_s: float = 30.0,
    width: int = 640, height: int = 360,  # frame size (px)
    seed: int = 0,
    workers: int = 1,
    preset: str | None = None,
    layout: str = SINGLE,
) -> list[Clip]:
    """Generate every subject x story clip (optionally in ``workers`` processes); deterministic for ``seed``."""
    if not subjects or not stories:
        raise ValueError("need at least one subject and one story")
    if len(set(subjects)) != len(subjects) or len(set(stories)) != len(stories):
        raise ValueError(f"duplicate subjects or stories: {list(subjects)} / {list(stories)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _check_args(duration_s, width, height)
    espeak_binary()  # fail before any work if the storyteller cannot speak
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    preset = preset or DEFAULT_PRESET
    jobs = [(str(root), int(s), int(k), float(duration_s), width, height, seed, preset, layout)
            for k in stories for s in subjects]
    started = time.perf_counter()
    clips: list[Clip] = []

    def done(clip: Clip, seconds: float) -> None:
        clips.append(clip)
        logger.info(
            "clip generated",
            extra={"clip": clip.name, "done": len(clips), "total": len(jobs), "seconds": round(seconds, 2),
                   "s_per_clip_s": round(seconds / duration_s, 4)},
        )

    if workers == 1:
        for job in jobs:
            done(*_clip_job(job))
    else:
        # spawn, not fork: forking a process that already runs OpenCV/x264 threads can deadlock.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_clip_job, job) for job in jobs]):
                done(*future.result())
    _write_manifest(root, subjects, stories, duration_s, width, height, seed, layout)
    logger.info("data set generated", extra={"clips": len(clips), "seconds": round(time.perf_counter() - started, 2),
                                             "out": str(root)})
    return sorted(clips, key=lambda c: (c.subject, c.story))


def _write_manifest(root: Path, subjects: Sequence[int], stories: Sequence[int], duration_s: float, width: int,
                    height: int, seed: int, layout: str = SINGLE) -> None:
    """Record how the set was made (and each listener's hidden reaction) for provenance and debugging."""
    manifest = {
        "generator": "synthetic",
        "seed": seed,
        "subjects": list(subjects),
        "stories": list(stories),
        "duration_s": duration_s,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "size": [width, height],
        "layout": layout,
        "listeners": {str(s): vars(listener(s, seed)) for s in subjects},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
