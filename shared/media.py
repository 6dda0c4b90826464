"""Streaming decode of a video's frames at a constant 25 fps and of its audio at 16 kHz mono (PyAV).

Labels in OMG-Empathy are one value every 40 ms, so every modality must see exactly one frame per 40 ms slot,
whatever the source frame rate (30, 24, 25 fps or variable). Slot ``i`` (time ``i / fps`` after the video
stream's start) gets the source frame *on screen* at that instant: the last frame whose timestamp is at or
before it (1 ms of tolerance absorbs timestamp rounding in millisecond time bases). A 25 fps source therefore
maps frame-for-frame; a 30 fps source drops one frame in six; a 24 fps source repeats one in 24. The number of
slots is ``round(duration * fps)`` (half up) where ``duration`` is the *video stream's* duration, so frames,
audio samples (``round(duration * sample_rate)``) and label rows all describe the same span.

Nothing here holds a whole video in memory: frames are decoded one at a time (threaded decoding) and audio is
resampled in a stream and handed out in chunks. Frames that ``every=k`` skips are still decoded (inter-frame
codecs need them) but never colour-converted, cropped or resized, which is where most of the time goes.

Errors are :class:`MediaError` subclasses (themselves ``ValueError``) with the file name and what is wrong,
so the gateway can turn them into a 4xx answer: a truncated upload is told apart from a file that was never
a video.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

logger = logging.getLogger(__name__)

# The frame rate every decode resamples to unless told otherwise: OMG-Empathy's labels come every 40 ms
# (``EMPATHY_FPS``'s default; callers holding settings pass theirs).
FPS = 25
# A frame whose timestamp is at most this much after a slot's instant still counts as on screen at it:
# millisecond time bases (Matroska, WebM) round 1/30 s to 33 or 34 ms.
_SLOT_TOLERANCE_S = 1e-3
# A stream that ends more than this before its declared duration was cut short (truncated upload or copy).
_TRUNCATION_TOLERANCE_S = 0.5
# Box types that can start an ISO-BMFF (MP4/MOV) file: if one is there but FFmpeg cannot open the file,
# the index ('moov', written last by default) is missing, i.e. the file was cut short.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
# FFmpeg demuxers that "play" plain text as a video (tty renders .txt files as ANSI art): not videos to us.
_TEXT_FORMATS = frozenset({"tty"})
# Demuxers of single pictures (FFmpeg's image2 family: png_pipe, jpeg_pipe, webp_pipe, ...): still images.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})
# Opening a container for its headers only: no decoder may be opened, so FFmpeg's stream analysis
# (avformat_find_stream_info) reads the container and bitstream headers but never decodes a frame. Without
# it, a 750 KB H.264 file declaring 16000x16000 frames made the caller allocate ~600 MB, and a 250 KB PNG
# of the same size was inflated to 256 MB, before anything could look at the size.
_HEADERS_ONLY = {"codec_whitelist": "none"}
# How much of a file the still-image sniffer reads (a JPEG's frame header can follow large EXIF data).
_SNIFF_BYTES = 256 * 1024


class MediaError(ValueError):
    """Base of every decoding problem; the message names the file and what is wrong with it."""


class NotAVideoError(MediaError):
    """The file is empty or is not a media container FFmpeg recognises."""


class NoVideoStreamError(MediaError):
    """The container opens but holds no video stream (e.g. an audio-only file)."""


class NoAudioStreamError(MediaError):
    """Audio was asked of a container that has no audio stream."""


class TruncatedMediaError(MediaError):
    """The file starts like a valid container but is cut short or corrupt part-way."""


class StillImageError(MediaError):
    """The file is a picture (PNG, JPEG, ...), not a video: known from its header, nothing decoded."""


class UnknownFrameSizeError(MediaError):
    """The container and stream headers do not say how large the frames are (only decoding would tell)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a caller needs before decoding: how many 25 fps frames will come and at what size."""

    path: Path
    duration_s: float
    n_frames: int  # frames iter_frames yields at the same fps (25 unless both are given another)
    width: int
    height: int
    native_fps: float  # the source's average frame rate (informative only; decoding always resamples)
    has_audio: bool


def _round_half_up(x: float) -> int:
    """``round`` that does not do banker's rounding: 75.5 -> 76, 74.5 -> 75, like every other count here."""
    return int(math.floor(x + 0.5))


def _png_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (always the first, right after the signature)."""
    if len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame marker (SOF0..SOF15 but DHT, JPG, DAC) within ``head``."""
    at = 2
    while at + 9 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(head[at + 2:at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[at + 7:at + 9], "big"), int.from_bytes(head[at + 5:at + 7], "big")
        at += 2 + length
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8 " and len(head) >= 30:
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _bmp_size(head: bytes) -> tuple[int, int] | None:
    if len(head) >= 26:
        return int.from_bytes(head[18:22], "little", signed=True), abs(int.from_bytes(head[22:26], "little", signed=True))
    return None


# Still-image formats recognised from their first bytes: (name, signature test, size from the header).
_IMAGE_SIGNATURES = (
    ("PNG", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), _png_size),
    ("JPEG", lambda h: h.startswith(b"\xff\xd8\xff"), _jpeg_size),
    ("WebP", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", _webp_size),
    ("BMP", lambda h: h[:2] == b"BM" and len(h) >= 26, _bmp_size),
    ("TIFF", lambda h: h[:4] in (b"II*\0", b"MM\0*"), lambda h: None),
    ("QOI", lambda h: h[:4] == b"qoif" and len(h) >= 12,
     lambda h: (int.from_bytes(h[4:8], "big"), int.from_bytes(h[8:12], "big"))),
)


def still_image(path: str | Path) -> str | None:
    """``"PNG 16000x16000"`` when the file is a still image by its first bytes (no decoder runs), else None.

    Pictures must be refused from their header: FFmpeg's stream analysis decodes a picture to learn its
    size, and a PNG "bomb" (a 16000x16000 picture of one colour compresses to a few hundred kilobytes)
    inflates to hundreds of megabytes in whatever process looks at it. Formats not listed here are caught
    after a headers-only open by their demuxer (:data:`_IMAGE_FORMATS`, ``*_pipe``).
    """
    with Path(path).open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    for name, matches, size_of in _IMAGE_SIGNATURES:
        if matches(head):
            size = size_of(head)
            return f"{name} {size[0]}x{size[1]}" if size else name
    return None


def _open(path: Path, *, headers_only: bool = False) -> av.container.InputContainer:
    """Open a container, mapping FFmpeg's failures to errors that say what is wrong with the file.

    ``headers_only``: no decoder is opened while FFmpeg analyses the streams (:data:`_HEADERS_ONLY`), so
    opening costs the same whatever the frames declare; the streams' codec contexts are not usable for
    decoding then, only for their header values.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise NotAVideoError(f"{path}: the file is empty (0 bytes), not a video")
    try:
        container = av.open(str(path), mode="r", options=dict(_HEADERS_ONLY) if headers_only else None)
    except av.error.FFmpegError as exc:
        with path.open("rb") as fh:
            head = fh.read(12)
        if len(head) >= 8 and head[4:8] in _MP4_BOXES:
            raise TruncatedMediaError(
                f"{path}: starts like an MP4/MOV file but cannot be opened ({exc}); its index (moov atom) is "
                "probably missing because the file is truncated (incomplete upload or copy)"
            ) from exc
        raise NotAVideoError(f"{path}: not a media file FFmpeg can read ({exc})") from exc
    if container.format.name in _TEXT_FORMATS:
        container.close()
        raise NotAVideoError(f"{path}: a text file ({container.format.long_name} demuxer), not a video")
    if container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe"):
        name = container.format.name
        container.close()
        raise StillImageError(f"{path}: a still image (FFmpeg's {name} demuxer), not a video")
    return container


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise NoVideoStreamError(f"{path}: the file has no video stream (streams: {kinds})")
    return container.streams.video[0]


def _stream_start_s(stream: av.stream.Stream) -> float:
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _stream_duration_s(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Declared duration of one stream; the container's when the stream has none (Matroska/WebM)."""
    if stream.duration is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _scan_duration_s(path: Path, stream_index: int) -> float:
    """Duration from the packets themselves, for containers that declare none (demux only, no decoding).

    Raw elementary streams (``.h264``) carry no timestamps at all; their packets are counted at the stream's
    guessed rate, which is all FFmpeg itself knows about their timing.
    """
    with _open(path, headers_only=True) as container:
        stream = container.streams[stream_index]
        start = _stream_start_s(stream)
        end = start
        untimed = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    untimed += 1
                    continue
                length = packet.duration or 0
                end = max(end, float((packet.pts + length) * stream.time_base))
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(f"{path}: cannot read the video packets ({exc}); truncated or corrupt") from exc
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if end == start and untimed and rate:
            return untimed / float(rate)
    return end - start


def _video_duration_s(container: av.container.InputContainer, stream: av.stream.Stream, path: Path) -> float:
    duration = _stream_duration_s(container, stream)
    if duration is None:
        duration = _scan_duration_s(path, stream.index)
    if duration <= 0:
        raise NotAVideoError(f"{path}: the video stream has no duration")
    return duration


def probe(path: str | Path, *, fps: float = FPS) -> VideoInfo:
    """Read the headers only: size, duration and the number of ``fps`` frames :func:`iter_frames` will yield.

    Nothing is decoded, so probing costs the same (milliseconds, a few MB) whatever the file declares: a
    still image is refused by its first bytes (:func:`still_image`, :class:`StillImageError`) and a video is
    opened with no decoder (:data:`_HEADERS_ONLY`). ``width``/``height`` are 0 when the headers do not give
    the frame size (MPEG-4 Part 2 in MP4, H.263, FLV1: only their decoder knows it); :func:`check_limits`
    refuses those. ``fps`` has the default of :func:`iter_frames`, so the announced count and the decoded
    frames agree.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if path.is_file() and (image := still_image(path)) is not None:
        raise StillImageError(f"{path}: a still image ({image}), not a video")
    with _open(path, headers_only=True) as container:
        stream = _video_stream(container, path)
        duration = _video_duration_s(container, stream, path)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return VideoInfo(
            path=path,
            duration_s=duration,
            n_frames=_round_half_up(duration * fps),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            native_fps=float(rate) if rate else 0.0,
            has_audio=bool(container.streams.audio),
        )


class MediaLimitError(MediaError):
    """The video is larger than the frame-size or pixel-rate limit (known from its headers, before decoding)."""


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"3840x2160"`` -> (3840, 2160)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise ValueError(f"a frame size is 'WIDTHxHEIGHT', got {text!r}")
    return int(width), int(height)


def check_limits(info: VideoInfo, *, max_frame_size: str, max_pixel_rate: float, fps: float = FPS) -> None:
    """Refuse a video whose frames or pixel rate exceed the limits, from :func:`probe`'s header values only.

    Decoding cost and memory grow with pixels per frame and frames per second, not with file size: a
    750 KB file of three 16000x16000 frames costs each vision worker gigabytes. The frame limit applies in
    either orientation (portrait 2160x3840 passes a 3840x2160 limit); the rate uses the source's frame rate
    (every source frame is decoded), ``fps`` when the header has none.
    """
    limit_w, limit_h = parse_frame_size(max_frame_size)
    width, height = info.width, info.height
    if width <= 0 or height <= 0:
        raise UnknownFrameSizeError(f"{info.path.name}: its headers do not give the frame size (only decoding it "
                                    "would tell, and nothing is decoded before the size is known); re-encode it, "
                                    "e.g. as H.264 in MP4")
    if width * height > limit_w * limit_h or max(width, height) > max(limit_w, limit_h):
        raise MediaLimitError(f"{info.path.name}: frames of {width}x{height} are larger than the limit of "
                              f"{limit_w}x{limit_h} (EMPATHY_MAX_FRAME_SIZE)")
    rate_fps = info.native_fps if info.native_fps > 0 else float(fps)
    rate = width * height * rate_fps
    if rate > max_pixel_rate:
        raise MediaLimitError(f"{info.path.name}: {width}x{height} at {rate_fps:g} fps is {rate / 1e6:.0f} "
                              f"Mpixel/s, more than the limit of {max_pixel_rate / 1e6:.0f} Mpixel/s (EMPATHY_MAX_PIXEL_RATE)")


def _check_crop(crop: tuple[float, float, float, float] | None) -> None:
    if crop is None:
        return
    if len(crop) != 4:
        raise ValueError(f"crop must be (x0, y0, x1, y1) fractions, got {crop!r}")
    x0, y0, x1, y1 = (float(v) for v in crop)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ValueError(f"crop must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {crop!r}")


def _check_size(size: tuple[int, int] | None) -> None:
    if size is None:
        return
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise ValueError(f"size must be (width, height) with positive integers, got {size!r}")


# 8-bit pixel formats whose first plane is the luma (Y) at full resolution: gray is that plane, no swscale.
_LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"})
# Limited-range ("TV", Y in 16..235) to full-range gray, as FFmpeg's own gray conversion does.
_TV_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_JPEG_RANGE = 2  # AVColorRange AVCOL_RANGE_JPEG: full-range samples


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    """A view (no copy) of one 8-bit plane without its row padding."""
    plane = frame.planes[index]
    rows = np.frombuffer(plane, np.uint8, count=plane.line_size * height).reshape(height, plane.line_size)
    return rows[:, :width]


def _full_range(frame: av.VideoFrame) -> bool:
    return frame.format.name.startswith("yuvj") or frame.color_range == _JPEG_RANGE


def _gray(frame: av.VideoFrame, crop: tuple[int, int, int, int]) -> np.ndarray:
    """Gray straight from the luma plane (about 50x faster than swscale), cropped before any copy."""
    x0, y0, x1, y1 = crop
    if frame.format.name not in _LUMA_FIRST:
        return frame.to_ndarray(format="gray")[y0:y1, x0:x1]
    luma = _plane(frame, 0, frame.width, frame.height)[y0:y1, x0:x1]
    return luma.copy() if _full_range(frame) else cv2.LUT(luma, _TV_TO_FULL)


def _rgb(frame: av.VideoFrame, crop: tuple[int, int, int, int]) -> np.ndarray:
    """RGB through OpenCV's I420 conversion (BT.601 limited range, as swscale's default) when it applies."""
    x0, y0, x1, y1 = crop
    width, height = frame.width, frame.height
    if frame.format.name != "yuv420p" or _full_range(frame) or width % 2 or height % 2:
        return frame.to_ndarray(format="rgb24")[y0:y1, x0:x1]
    planes = (
        _plane(frame, 0, width, height),
        _plane(frame, 1, width // 2, height // 2),
        _plane(frame, 2, width // 2, height // 2),
    )
    i420 = np.concatenate([p.reshape(-1) for p in planes]).reshape(height * 3 // 2, width)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)[y0:y1, x0:x1]


def crop_pixels(
    crop: tuple[float, float, float, float] | None, width: int, height: int
) -> tuple[int, int, int, int]:
    """Fractions to pixel bounds ``(x0, y0, x1, y1)``, never empty: the one rounding rule of every crop.

    Public so that code cropping an already decoded frame (one decode shared by several modalities) cuts
    exactly the pixels :func:`iter_frames` would have cut.
    """
    if crop is None:
        return 0, 0, width, height
    x0, y0 = round(crop[0] * width), round(crop[1] * height)
    return x0, y0, max(round(crop[2] * width), x0 + 1), max(round(crop[3] * height), y0 + 1)


def _convert(
    frame: av.VideoFrame,
    gray: bool,
    crop: tuple[float, float, float, float] | None,
    size: tuple[int, int] | None,
) -> np.ndarray:
    """Colour conversion and crop, then resize (INTER_AREA: the right kernel for shrinking)."""
    box = crop_pixels(crop, frame.width, frame.height)
    image = _gray(frame, box) if gray else _rgb(frame, box)
    if size is not None:
        image = cv2.resize(image, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def iter_frames(
    path: str | Path,
    *,
    fps: float = FPS,
    gray: bool = False,
    size: tuple[int, int] | None = None,
    crop: tuple[float, float, float, float] | None = None,
    every: int = 1,
    threads: int = 1,
) -> Iterator[np.ndarray]:
    """Yield the video's frames resampled to ``fps``: exactly ``round(duration * fps)`` of them.

    Frames are uint8, ``(H, W)`` when ``gray`` else ``(H, W, 3)`` RGB. ``crop`` is ``(x0, y0, x1, y1)`` in
    fractions of the frame, applied before ``size`` ``(width, height)``. ``every=k`` yields only slots
    ``0, k, 2k, ...`` (``ceil(n / k)`` frames) for callers that predict on a sparse grid. ``threads``: FFmpeg's
    decoding threads (``EMPATHY_DECODE_THREADS``, passed down by whoever read the settings; 0 = one per core).
    A file whose video ends well before its declared duration, or that fails to decode part-way, raises
    :class:`TruncatedMediaError` once the frames that could be decoded have been yielded.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if int(every) != every or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    if int(threads) != threads or threads < 0:
        raise ValueError(f"threads must be 0 (one per core) or a positive integer, got {threads!r}")
    _check_crop(crop)
    _check_size(size)
    every = int(every)

    with _open(path) as container:
        stream = _video_stream(container, path)
        duration = _video_duration_s(container, stream, path)
        n_slots = _round_half_up(duration * fps)
        origin = _stream_start_s(stream)
        rate = stream.average_rate or stream.guessed_rate
        frame_period = 1.0 / float(rate) if rate else 1.0 / fps
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = int(threads)

        slot = 0  # next slot to fill
        current: av.VideoFrame | None = None  # source frame on screen at the next slot's instant
        current_number = -1  # its position in decoding order (ids of freed frames get reused: not a key)
        cached: tuple[int, np.ndarray] | None = None  # (number of a source frame, its converted image)
        last_end = 0.0  # end of the last decoded frame, seconds after the stream start
        n_decoded = 0

        def emit(frame: av.VideoFrame, number: int) -> np.ndarray:
            nonlocal cached
            if cached is not None and cached[0] == number:
                return cached[1].copy()  # a repeated source frame: convert once, hand out copies
            image = _convert(frame, gray, crop, size)
            cached = (number, image)
            return image

        try:
            for frame in container.decode(stream):
                t = float(frame.time) - origin if frame.time is not None else n_decoded * frame_period
                n_decoded += 1
                if current is None:
                    current, current_number = frame, n_decoded  # slots before the first frame show it
                while slot < n_slots and slot / fps < t - _SLOT_TOLERANCE_S:
                    if slot % every == 0:
                        yield emit(current, current_number)
                    slot += 1
                current, current_number = frame, n_decoded
                shown_for = float(frame.duration * stream.time_base) if frame.duration else frame_period
                last_end = t + shown_for
                if slot >= n_slots:
                    break
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(
                f"{path}: decoding failed after {n_decoded} frames ({last_end:.2f} s of {duration:.2f} s): "
                f"{exc}; the file is truncated or corrupt"
            ) from exc

        if current is None:
            raise TruncatedMediaError(f"{path}: the video stream holds no decodable frame; truncated or corrupt")
        if slot < n_slots and last_end < duration - _TRUNCATION_TOLERANCE_S:
            raise TruncatedMediaError(
                f"{path}: the video stops at {last_end:.2f} s but declares {duration:.2f} s; "
                "the file is truncated (incomplete upload or copy)"
            )
        while slot < n_slots:  # the last source frame stays on screen to the end
            if slot % every == 0:
                yield emit(current, current_number)
            slot += 1
        logger.debug(
            "decoded video",
            extra={"path": str(path), "source_frames": n_decoded, "frames": n_slots, "every": every},
        )


def _audio_span(container: av.container.InputContainer, audio: av.stream.Stream, path: Path) -> tuple[float, float]:
    """(duration the output must cover, offset of the audio's start after the video's start), in seconds.

    With a video stream the audio is laid on the *video's* time line, so sample ``16000 * t`` is heard with
    frame ``25 * t``; an audio-only file uses its own duration.
    """
    if container.streams.video:
        video = container.streams.video[0]
        duration = _video_duration_s(container, video, path)
        return duration, _stream_start_s(audio) - _stream_start_s(video)
    duration = _stream_duration_s(container, audio)
    if duration is None:
        duration = _scan_duration_s(path, audio.index)
    return duration, 0.0


def iter_audio(path: str | Path, *, sample_rate: int = 16000, chunk_s: float = 10.0) -> Iterator[np.ndarray]:
    """Yield the audio as float32 mono chunks of ``chunk_s`` seconds (the last one shorter), streaming.

    The chunks together are exactly ``round(duration * sample_rate)`` samples on the video's time line
    (zero-padded or trimmed at the ends), i.e. the same samples :func:`read_audio` returns.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if chunk_s <= 0:
        raise ValueError(f"chunk_s must be positive, got {chunk_s}")
    chunk = max(1, int(round(chunk_s * sample_rate)))

    with _open(path) as container:
        if not container.streams.audio:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise NoAudioStreamError(f"{path}: the file has no audio stream (streams: {kinds})")
        audio = container.streams.audio[0]
        duration, offset = _audio_span(container, audio, path)
        total = _round_half_up(duration * sample_rate)
        declared = _stream_duration_s(container, audio)
        # Keep the source channels and average them ourselves: FFmpeg's stereo->mono matrix sums the channels
        # at -3 dB each, which makes identical channels 41 % louder and can clip.
        resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)

        pending: list[np.ndarray] = []
        n_pending = 0
        n_out = 0  # samples yielded so far
        skip = max(0, -_round_half_up(offset * sample_rate))  # audio that starts before the video
        lead = max(0, _round_half_up(offset * sample_rate))  # silence before audio that starts late
        if lead:
            pending.append(np.zeros(min(lead, total), np.float32))
            n_pending = pending[0].size
        n_decoded = 0

        def take(samples: np.ndarray) -> Iterator[np.ndarray]:
            nonlocal n_pending, n_out, pending
            samples = samples[: total - n_out - n_pending]
            if samples.size:
                pending.append(samples)
                n_pending += samples.size
            while n_pending >= chunk or (n_pending and n_out + n_pending >= total):
                joined = np.concatenate(pending)
                out, rest = joined[:chunk], joined[chunk:]
                pending = [rest] if rest.size else []
                n_pending = rest.size
                n_out += out.size
                yield out

        try:
            for frame in _with_flush(container.decode(audio)):
                for out_frame in resampler.resample(frame):
                    planes = out_frame.to_ndarray()  # (channels, samples), planar float
                    samples = np.clip(planes.mean(axis=0), -1.0, 1.0).astype(np.float32, copy=False)
                    n_decoded += samples.size
                    if skip:
                        dropped = min(skip, samples.size)
                        samples, skip = samples[dropped:], skip - dropped
                    yield from take(samples)
                if n_out + n_pending >= total:
                    break
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(
                f"{path}: audio decoding failed after {n_decoded / sample_rate:.2f} s: {exc}; "
                "the file is truncated or corrupt"
            ) from exc

        if declared is not None and n_decoded / sample_rate < declared - _TRUNCATION_TOLERANCE_S:
            if n_out + n_pending < total:
                raise TruncatedMediaError(
                    f"{path}: the audio stops at {n_decoded / sample_rate:.2f} s but declares {declared:.2f} s; "
                    "the file is truncated (incomplete upload or copy)"
                )
        missing = total - n_out - n_pending
        if missing > 0:
            yield from take(np.zeros(missing, np.float32))
        logger.debug("decoded audio", extra={"path": str(path), "samples": total, "sample_rate": sample_rate})


def _with_flush(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame | None]:
    """The decoded frames followed by ``None``, which makes the resampler hand out what it still buffers."""
    yield from frames
    yield None


def read_audio(path: str | Path, *, sample_rate: int = 16000) -> np.ndarray:
    """The whole audio track, float32 mono, exactly ``round(duration * sample_rate)`` samples."""
    chunks = list(iter_audio(path, sample_rate=sample_rate))
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks)


__all__ = [
    "FPS",
    "MediaError",
    "NoAudioStreamError",
    "NoVideoStreamError",
    "NotAVideoError",
    "TruncatedMediaError",
    "VideoInfo",
    "iter_audio",
    "iter_frames",
    "probe",
    "read_audio",
]
