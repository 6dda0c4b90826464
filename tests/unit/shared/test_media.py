"""Decoding at exactly 25 fps and 16 kHz from videos generated here with PyAV, and the error cases."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from shared.media import (
    MediaError,
    MediaLimitError,
    NoAudioStreamError,
    NotAVideoError,
    NoVideoStreamError,
    StillImageError,
    TruncatedMediaError,
    UnknownFrameSizeError,
    check_limits,
    iter_audio,
    iter_frames,
    probe,
    read_audio,
    still_image,
)
from tests.bombs import write_h264_bomb, write_png_bomb

WIDTH, HEIGHT = 128, 64
BITS = 8  # the frame index is drawn as 8 black/white vertical bars (MSB left), robust to lossy coding
AUDIO_RATE = 44100
TONE_HZ = 440.0
CLICK_S = 1.0  # the tone starts here; silence before


def index_image(index: int) -> np.ndarray:
    bar = WIDTH // BITS
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for bit in range(BITS):
        if (index >> (BITS - 1 - bit)) & 1:
            image[:, bit * bar : (bit + 1) * bar] = 255
    return image


def read_index(gray: np.ndarray, bits: range = range(BITS)) -> int:
    """Inverse of index_image on a gray frame (or on a crop holding the given bars, left to right)."""
    bar = gray.shape[1] // len(bits)
    value = 0
    for position, bit in enumerate(bits):
        if gray[:, position * bar + bar // 4 : (position + 1) * bar - bar // 4].mean() > 128:
            value |= 1 << (BITS - 1 - bit)
    return value


def write_video(
    path: Path,
    *,
    timestamps_s: list[float],
    audio_s: float | None,
    time_base: Fraction,
    rate: int,
    options: dict[str, str] | None = None,
) -> Path:
    """H.264 (+ AAC stereo: silence, then a 440 Hz tone at amplitude 0.5 from CLICK_S) with given frame times."""
    with av.open(str(path), "w", options=options or {}) as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.options = {"preset": "ultrafast", "crf": "18"}
        audio = None
        if audio_s is not None:
            audio = container.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "stereo"
        for index, t in enumerate(timestamps_s):
            frame = av.VideoFrame.from_ndarray(index_image(index), format="rgb24")
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            n = int(round(audio_s * AUDIO_RATE))
            t = np.arange(n) / AUDIO_RATE
            tone = np.where(t >= CLICK_S, 0.5 * np.sin(2 * np.pi * TONE_HZ * t), 0.0).astype(np.float32)
            stereo = np.stack([tone, tone])
            for start in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(stereo[:, start : start + 1024]), format="fltp", layout="stereo"
                )
                frame.sample_rate = AUDIO_RATE
                frame.pts = start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


def constant_rate(path: Path, fps: int, duration_s: float, *, audio: bool = True, **kw: object) -> Path:
    n = int(round(fps * duration_s))
    return write_video(
        path,
        timestamps_s=[i / fps for i in range(n)],
        audio_s=duration_s if audio else None,
        time_base=Fraction(1, fps * 512),
        rate=fps,
        **kw,
    )


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    out = {
        "30": constant_rate(root / "v30.mp4", 30, 3.0),
        "25": constant_rate(root / "v25.mp4", 25, 3.0),
        "24": constant_rate(root / "v24.mp4", 24, 3.0, audio=False),
        "30_faststart": constant_rate(root / "v30fs.mp4", 30, 3.0, options={"movflags": "faststart"}),
        "30_mkv": constant_rate(root / "v30.mkv", 30, 3.0, audio=False),
    }
    # variable frame rate: irregular gaps between 10 and 90 ms, millisecond time base
    rng = np.random.default_rng(0)
    times = np.concatenate([[0.0], np.cumsum(rng.integers(10, 91, 60) / 1000.0)])
    times = times[times < 2.5]
    out["vfr"] = write_video(root / "vfr.mp4", timestamps_s=list(times), audio_s=None, time_base=Fraction(1, 1000), rate=25)
    return out


def expected_sources(source_times: np.ndarray, n_slots: int) -> list[int]:
    """The source frame on screen at each 40 ms slot: the last one whose time is at or before it."""
    return [int(np.searchsorted(source_times, i * 0.04 + 1e-9, side="right") - 1) for i in range(n_slots)]


@pytest.mark.parametrize("key,fps", [("30", 30), ("25", 25), ("24", 24), ("30_mkv", 30)])
def test_constant_rate_sources_give_25_fps_with_the_frame_on_screen(
    videos: dict[str, Path], key: str, fps: int
) -> None:
    info = probe(videos[key])
    assert info.n_frames == 75
    assert info.duration_s == pytest.approx(3.0)
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    assert info.native_fps == pytest.approx(fps)
    frames = list(iter_frames(videos[key], gray=True))
    assert len(frames) == 75
    chosen = [read_index(f) for f in frames]
    assert chosen == expected_sources(np.arange(3 * fps) / fps, 75)


def test_25_fps_source_maps_frame_for_frame(videos: dict[str, Path]) -> None:
    assert [read_index(f) for f in iter_frames(videos["25"], gray=True)] == list(range(75))


def test_variable_frame_rate_source_picks_by_timestamp(videos: dict[str, Path]) -> None:
    path = videos["vfr"]
    with av.open(str(path)) as container:
        times = np.array([float(f.time) for f in container.decode(video=0)])
    info = probe(path)
    frames = list(iter_frames(path, gray=True))
    assert len(frames) == info.n_frames == int(math.floor(info.duration_s * 25 + 0.5))
    assert [read_index(f) for f in frames] == expected_sources(times, info.n_frames)


def test_every_k_yields_the_same_frames_as_slicing(videos: dict[str, Path]) -> None:
    full = [read_index(f) for f in iter_frames(videos["30"], gray=True)]
    for k in (2, 4, 7):
        sparse = [read_index(f) for f in iter_frames(videos["30"], gray=True, every=k)]
        assert len(sparse) == math.ceil(75 / k)
        assert sparse == full[::k]


def test_probe_and_decode_agree_at_the_rate_the_caller_passes(videos: dict[str, Path]) -> None:
    """Both take their rate (and the decoder its threads) as arguments: no setting makes them disagree."""
    assert probe(videos["30"], fps=10).n_frames == len(list(iter_frames(videos["30"], gray=True, fps=10))) == 30
    threaded = [read_index(f) for f in iter_frames(videos["30"], gray=True, threads=0)]  # one per core
    assert threaded == [read_index(f) for f in iter_frames(videos["30"], gray=True, threads=1)]
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="threads"):
            next(iter_frames(videos["30"], threads=bad))
    with pytest.raises(ValueError, match="fps"):
        probe(videos["30"], fps=0)


def test_gray_rgb_crop_and_resize_shapes_and_content(videos: dict[str, Path]) -> None:
    path = videos["25"]
    rgb = next(iter_frames(path))
    assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
    gray = next(iter_frames(path, gray=True))
    assert gray.shape == (HEIGHT, WIDTH)
    small = next(iter_frames(path, gray=True, size=(32, 16)))
    assert small.shape == (16, 32)
    right = list(iter_frames(path, gray=True, crop=(0.5, 0.0, 1.0, 1.0)))
    assert right[0].shape == (HEIGHT, WIDTH // 2)
    # the right half holds bars 4..7, i.e. the low four bits of the frame index
    assert [read_index(f, range(4, 8)) for f in right[:20]] == [i & 0x0F for i in range(20)]
    cropped_rgb = next(iter_frames(path, crop=(0.25, 0.5, 0.75, 1.0), size=(20, 10)))
    assert cropped_rgb.shape == (10, 20, 3)
    with pytest.raises(ValueError, match="crop"):
        next(iter_frames(path, crop=(0.6, 0.0, 0.4, 1.0)))
    with pytest.raises(ValueError, match="every"):
        next(iter_frames(path, every=0))


def test_audio_is_16k_mono_exact_length_and_aligned(videos: dict[str, Path]) -> None:
    for key in ("30", "25"):
        audio = read_audio(videos[key])
        assert audio.dtype == np.float32 and audio.shape == (48000,)
        onset = int(np.argmax(np.abs(audio) > 0.1))
        assert abs(onset / 16000 - CLICK_S) < 0.003  # on the video's time line (AAC delay removed)
        tone = audio[20000:40000]
        # channels averaged, not FFmpeg's +3 dB downmix: identical 0.5 channels stay at 0.5
        assert np.abs(tone).max() == pytest.approx(0.5, abs=0.03)
        spectrum = np.abs(np.fft.rfft(tone))
        assert np.fft.rfftfreq(tone.size, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(TONE_HZ, abs=1.0)
    chunks = list(iter_audio(videos["30"], chunk_s=1.0))
    assert [c.size for c in chunks] == [16000, 16000, 16000]
    np.testing.assert_array_equal(np.concatenate(chunks), read_audio(videos["30"]))


def test_audio_only_file_has_no_video_but_its_audio_reads(tmp_path: Path) -> None:
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=AUDIO_RATE)
        stream.layout = "mono"
        samples = np.zeros((1, AUDIO_RATE * 2), np.float32)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        probe(path)
    with pytest.raises(NoVideoStreamError):
        next(iter_frames(path))
    assert read_audio(path).shape == (32000,)


def test_video_without_audio_raises_no_audio_stream(videos: dict[str, Path]) -> None:
    assert probe(videos["24"]).has_audio is False
    assert probe(videos["30"]).has_audio is True
    with pytest.raises(NoAudioStreamError, match="no audio stream"):
        read_audio(videos["24"])


def test_truncated_mp4_raises_truncated(videos: dict[str, Path], tmp_path: Path) -> None:
    for key in ("30", "30_faststart"):
        data = videos[key].read_bytes()
        cut = tmp_path / f"cut_{key}.mp4"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(TruncatedMediaError, match="truncated"):
            list(iter_frames(cut, gray=True))
        with pytest.raises(TruncatedMediaError, match="truncated"):
            read_audio(cut)


@pytest.mark.parametrize(
    "name,content",
    [("empty.mp4", b""), ("notes.txt", b"hello, this is not a video\n" * 20), ("noise.mp4", None)],
)
def test_non_media_files_raise_not_a_video(tmp_path: Path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(20000) if content is None else content)
    with pytest.raises(NotAVideoError):
        probe(path)
    with pytest.raises(NotAVideoError):
        next(iter_frames(path))
    with pytest.raises(MediaError):
        read_audio(path)


def test_probe_reads_headers_only_and_refuses_still_images_by_their_first_bytes(tmp_path: Path) -> None:
    """A 16000x16000 picture or video is sized from its headers in milliseconds: nothing is decoded."""
    png, h264 = write_png_bomb(tmp_path / "bomb.mp4"), write_h264_bomb(tmp_path / "bomb_h264.mp4")
    started = time.monotonic()  # the probes only: writing the bombs takes seconds on a busy machine
    with pytest.raises(StillImageError, match=r"still image \(PNG 16000x16000\)"):
        probe(png)  # the name says MP4: the bytes say PNG
    info = probe(h264)
    assert (info.width, info.height, info.n_frames) == (16000, 16000, 3)
    assert time.monotonic() - started < 1.0  # decoding them took 8 s and 1.5 s (and ~700 MB each)
    with pytest.raises(MediaLimitError, match="16000x16000"):
        check_limits(info, max_frame_size="3840x2160", max_pixel_rate=1e12)
    jpeg = tmp_path / "photo.jpg"
    av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24").to_image().save(jpeg)
    assert still_image(jpeg) == "JPEG 64x48"
    with pytest.raises(StillImageError):
        next(iter_frames(jpeg))  # decoding refuses pictures too (FFmpeg's image demuxers)


def test_a_video_whose_headers_do_not_give_its_frame_size_is_refused(tmp_path: Path) -> None:
    """MPEG-4 Part 2 in MP4: FFmpeg learns its frame size only by decoding; nothing decodes before the limits."""
    path = tmp_path / "old.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(30):
            for packet in stream.encode(av.VideoFrame(64, 48, "yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    info = probe(path)
    assert (info.width, info.height) == (0, 0) and info.n_frames == 30
    with pytest.raises(UnknownFrameSizeError, match="do not give the frame size"):
        check_limits(info, max_frame_size="3840x2160", max_pixel_rate=1e12)
    assert len(list(iter_frames(path, gray=True))) == 30  # decoding it (a trusted caller) still works


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "absent.mp4")


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p"])
def test_fast_colour_conversion_matches_ffmpeg(tmp_path: Path, pix_fmt: str) -> None:
    """Gray from the luma plane and RGB through OpenCV agree with FFmpeg's own (swscale) conversion."""
    path = tmp_path / f"colour_{pix_fmt}.mp4"
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for i in range(5):
            image = np.stack([xx * 2 % 256, yy * 4 % 256, np.full_like(xx, 40 * i)], axis=2).astype(np.uint8)
            image[10:30, 20:60] = rng.integers(0, 256, 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        reference = [(f.to_ndarray(format="gray"), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    grays = list(iter_frames(path, gray=True))
    rgbs = list(iter_frames(path))
    assert len(grays) == len(rgbs) == len(reference) == 5
    for gray, rgb, (ref_gray, ref_rgb) in zip(grays, rgbs, reference, strict=True):
        assert np.abs(gray.astype(int) - ref_gray).max() <= 1
        assert np.abs(rgb.astype(int) - ref_rgb).max() <= 4
        assert np.abs(rgb.astype(int) - ref_rgb).mean() < 1.5  # chroma upsampling differs slightly


def test_raw_h264_without_timestamps_is_counted_at_ffmpegs_rate(tmp_path: Path) -> None:
    """An elementary stream declares no duration and no times: its packets are counted (FFmpeg assumes 25 fps)."""
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(40):
            for packet in stream.encode(av.VideoFrame.from_ndarray(index_image(index), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    info = probe(path)
    assert info.n_frames == 40
    assert [read_index(f) for f in iter_frames(path, gray=True)] == list(range(40))
