"""One decode of a video feeding several vision modalities at once (``empathy analyze``).

Decoding a 1280x720 H.264 frame and turning it grey costs about as much as tracking the face in it, and
the face, landmarks and body modalities all read the same frames. A worker of the ensemble runs one
modality and decodes once; ``empathy analyze`` runs all of them in one process, so it decodes once and hands
each grey (listener-cropped) frame to every modality's *frame consumer*: the very per-frame code each
modality's own ``prepare`` runs, so the windows are identical whichever path made them
(``tests/integration/test_performance_equivalence.py``).

Each consumer runs in a thread of its own (the per-frame work of dlib, OpenCV and NumPy releases the GIL),
so the three trackers share the cores the way the ensemble's three workers do.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.crops import Box, ListenerRegion
from shared.media import iter_frames
from shared.modalities.base import Windows

logger = logging.getLogger(__name__)

QUEUE_FRAMES = 8  # frames decoded ahead of the slowest consumer (1280x720 grey: 0.9 MB each)


class FrameConsumer(Protocol):
    """A modality's per-frame preprocessing: every 25 fps frame in order, grey, cropped to its ``region``."""

    region: ListenerRegion

    def feed(self, grey: np.ndarray) -> None: ...

    def finish(self, video: Path | str = "") -> Windows: ...


@dataclass
class Prepared:
    """What preparing one modality gave: its windows or the error that stopped it, and the time it took."""

    windows: Windows | None
    error: Exception | None
    seconds: float


def decode_threads(params: Mapping[str, Any] | None) -> int:
    """FFmpeg's decoding threads from a modality's parameters: ``decode_threads``, put there at inference by
    :meth:`shared.modalities.vision.VisionModality.runtime_params` from ``EMPATHY_DECODE_THREADS`` (never recorded in a model); 1 without."""
    return int((params or {}).get("decode_threads", 1))


def listener_frames(video: Path | str, region: Box | None, threads: int = 1) -> Iterator[np.ndarray]:
    """The frames every vision modality reads: grey, 25 fps, cropped to the listener region (None = whole frame).

    The region comes from :func:`shared.crops.region_for_video` (job, model metadata or the frame size);
    ``threads``: FFmpeg's decoding threads (:func:`decode_threads`).
    """
    return iter_frames(video, gray=True, crop=region, threads=threads)


@dataclass
class _Failure:
    error: Exception


_END = object()


def _put(handoff: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless told to stop while waiting for room; False when stopped."""
    while not stop.is_set():
        try:
            handoff.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetched(frames: Iterator[np.ndarray], depth: int = 0) -> Iterator[np.ndarray]:
    """The same frames, decoded by a background thread up to ``depth`` (default :data:`QUEUE_FRAMES`) ahead.

    A worker's tracker and the decoder then run at the same time instead of taking turns: decoding and the
    grey conversion release the GIL, and so does most of the tracking. A decoding error is raised here, at
    the frame where it happened; stopping early (an error in the caller) stops the decoder too.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth or QUEUE_FRAMES)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                if not _put(handoff, frame, stop):
                    return
            _put(handoff, _END, stop)
        except Exception as exc:  # noqa: BLE001 - handed to the reading thread, which raises it
            _put(handoff, _Failure(exc), stop)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # releases the container in the thread that iterated it

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class _ConsumerThread(threading.Thread):
    """Feeds one consumer from its own bounded queue, so consumers run side by side on the cores.

    dlib's detector and shape predictor, OpenCV and NumPy release the GIL for their work, so the face,
    landmarks and body trackers really run in parallel; the bounded queue keeps at most
    :data:`QUEUE_FRAMES` frames waiting per consumer (memory stays flat) and slows the decoder down to the
    slowest consumer.
    """

    def __init__(self, name: str, consumer: FrameConsumer) -> None:
        super().__init__(name=f"frames-{name}", daemon=True)
        self.consumer = consumer
        self.frames: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=QUEUE_FRAMES)
        self.error: Exception | None = None
        self.cpu_s = 0.0

    def run(self) -> None:
        while (grey := self.frames.get()) is not None:
            if self.error is not None:
                continue  # keep draining so the decoder never blocks on a consumer that gave up
            try:
                self.consumer.feed(grey)
            except Exception as exc:  # noqa: BLE001 - one modality's failure must not stop the others
                self.error = exc
        self.cpu_s = time.thread_time()


def feed_together(video: Path | str, consumers: Mapping[str, FrameConsumer],
                  region: Box | None = None, *, threads: int = 1) -> dict[str, Prepared]:
    """Decode ``video`` once, cropped to ``region``, and feed every consumer (each in its own thread); never raises.

    A consumer that fails is dropped (its error kept) and the others go on; a decoding error (truncated
    file...) is the error of every consumer, as it would have been on its own decode. A modality's seconds
    are the CPU time of its own thread plus an equal share of the decoding thread's CPU time (FFmpeg's own
    decoding threads are not counted): they say where the work went, while the modalities ran side by side.
    ``threads``: FFmpeg's decoding threads.
    """
    feeders = {name: _ConsumerThread(name, consumer) for name, consumer in consumers.items()}
    for thread in feeders.values():
        thread.start()
    decode_error: Exception | None = None
    started = time.thread_time()
    try:
        for grey in listener_frames(video, region, threads):
            grey.flags.writeable = False  # one frame, several readers: none may change it
            for thread in feeders.values():
                thread.frames.put(grey)
    except Exception as exc:  # noqa: BLE001 - the decode's error belongs to every modality reading it
        decode_error = exc
    finally:
        for thread in feeders.values():
            thread.frames.put(None)
        for thread in feeders.values():
            thread.join()
    share = (time.thread_time() - started) / max(len(consumers), 1)
    outcomes: dict[str, Prepared] = {}
    for name, thread in feeders.items():
        error, windows = thread.error or decode_error, None
        began = time.thread_time()
        if error is None:
            try:
                windows = thread.consumer.finish(video)
            except Exception as exc:  # noqa: BLE001 - reported per modality
                error = exc
        seconds = thread.cpu_s + (time.thread_time() - began) + share
        outcomes[name] = Prepared(windows=windows, error=error, seconds=seconds)
    logger.info("shared decode done", extra={"video": str(video), "modalities": sorted(consumers),
                                             "seconds": {k: round(v.seconds, 3) for k, v in outcomes.items()}})
    return outcomes
