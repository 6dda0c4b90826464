"""The ``empathy`` commands as a person runs them (``python -m cli ...`` in a subprocess): what they refuse
before any work starts, and what they write on stderr (short text log lines above the progress bar by
default, JSON lines on request)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ensemble_support import REPO, export_tiny_model, write_tiny_video

TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S")


def _empathy(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMPATHY_")}  # the defaults, as a user has them
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**base, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def test_analyze_refuses_to_start_without_models(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4")
    result = _empathy("analyze", str(video), "--models-dir", str(tmp_path / "none"), "--no-build", cwd=tmp_path)
    assert result.returncode == 2 and "no model for audio" in result.stderr
    assert not (tmp_path / "clip_valence.csv").exists()


def test_submit_reports_an_unreachable_gateway(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4")
    result = _empathy("submit", str(video), "--gateway", "http://127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 2 and "cannot reach the gateway" in result.stderr


def test_a_malformed_listener_region_is_refused_before_any_work(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4")
    for command in ("analyze", "submit"):
        result = _empathy(command, str(video), "--listener", "0.6,0,0.5,1", cwd=tmp_path)
        assert result.returncode == 2 and "--listener" in result.stderr and "0 <= x0 < x1 <= 1" in result.stderr


# --- what analyze writes on stderr ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def analyzable(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4 s video and a models directory with a tiny (untrained) audio model: analyze runs in seconds."""
    folder = tmp_path_factory.mktemp("analyze")
    video = write_tiny_video(folder / "clip.mp4", seconds=4.0)
    export_tiny_model(folder / "models", "audio", video)
    return video, folder / "models"


def _analyze(analyzable: tuple[Path, Path], cwd: Path, *extra: str, env: dict[str, str] | None = None) -> list[str]:
    """Run analyze on the audio model; returns stderr as a terminal shows it: each line as left after the
    carriage returns of the progress bar (what follows the last ``\\r``)."""
    video, models = analyzable
    result = _empathy("analyze", str(video), "--modalities", "audio", "--models-dir", str(models), "--no-build",
                      *extra, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    assert "result: clip_valence.csv" in result.stdout and (cwd / "clip_valence.csv").is_file()
    return [line.rsplit("\r", 1)[-1] for line in result.stderr.splitlines()]


def test_analyze_logs_short_text_lines_above_its_progress_bar(analyzable: tuple[Path, Path], tmp_path: Path) -> None:
    shown = _analyze(analyzable, tmp_path)
    logs = [line for line in shown if TEXT_LINE.match(line)]
    messages = [line.split(" ", 2)[2].strip() for line in logs]
    assert any(m.startswith("loaded servable (model=audio, version=1") for m in messages), shown
    assert any(m.startswith("modality done (modality=audio, status=ok") for m in messages), shown
    assert not any('"ts"' in line or line.lstrip().startswith("{") for line in shown)  # no JSON
    # every log message starts a line of its own: none is glued onto the bar ("analyze: 0%|...| audio: ok]12:...")
    for line in shown:
        if "modality done" in line or "loaded servable" in line:
            assert TEXT_LINE.match(line), line
    bars = [line for line in shown if line.startswith("analyze:")]
    assert bars and "1/1" in bars[-1]  # the bar is still drawn, to its end


def test_analyze_logs_json_lines_on_request(analyzable: tuple[Path, Path], tmp_path: Path) -> None:
    """``--log-format json``; EMPATHY_LOG_FORMAT's part in the choice is in tests/unit/shared/test_logs.py."""
    shown = _analyze(analyzable, tmp_path, "--log-format", "json", env={"EMPATHY_LOG_FORMAT": "text"})
    records = [json.loads(line) for line in shown if line.startswith("{")]
    assert {"ts", "time", "level", "logger", "msg"} <= set(records[0])
    done = [r for r in records if r["msg"] == "modality done"]
    assert done and done[0]["modality"] == "audio" and done[0]["status"] == "ok" and done[0]["n_frames"] == 100
    assert not any(TEXT_LINE.match(line) for line in shown)


def test_a_log_format_the_command_does_not_know_is_refused(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4")
    result = _empathy("analyze", str(video), "--log-format", "xml", cwd=tmp_path)
    assert result.returncode == 2 and "--log-format" in result.stderr and "'text', 'json'" in result.stderr


def test_analyze_on_a_folder_writes_one_csv_each_and_resumes(analyzable: tuple[Path, Path], tmp_path: Path) -> None:
    video, models = analyzable
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("Subject_1_Story_1.mp4", "Subject_2_Story_1.mp4"):
        (folder / name).write_bytes(video.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video")
    args = ("analyze", str(folder), "--out", "pred", "--modalities", "audio", "--models-dir", str(models), "--no-build")
    first = _empathy(*args, cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # one video failed, and says why
    assert "3 videos" in first.stdout and "2 done" in first.stdout and "1 failed" in first.stdout
    assert "broken.mp4:" in first.stderr
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["Subject_1_Story_1.csv", "Subject_2_Story_1.csv"]
    assert (tmp_path / "pred" / "Subject_1_Story_1.csv").read_text().startswith("valence,agreement,band_low,band_high")
    (folder / "broken.mp4").unlink()
    second = _empathy(*args, cwd=tmp_path)
    assert second.returncode == 0 and "2 skipped" in second.stdout and "0 done" in second.stdout, second.stdout


def test_a_batch_needs_an_output_folder(tmp_path: Path) -> None:
    write_tiny_video(tmp_path / "a.mp4")
    write_tiny_video(tmp_path / "b.mp4")
    for command in ("submit", "analyze"):
        result = _empathy(command, str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), cwd=tmp_path)
        assert result.returncode == 2 and "--out PRED_DIR" in result.stderr
    result = _empathy("submit", str(tmp_path / "none-*.mp4"), "--out", "pred", cwd=tmp_path)
    assert result.returncode == 2 and "no video in" in result.stderr


def test_webhook_verify_checks_a_saved_callback(tmp_path: Path) -> None:
    from empathy_client.webhooks import sign

    body = b'{"event": "job.done", "job": {"id": "abc", "state": "done"}}'
    (tmp_path / "body.json").write_bytes(body)
    good = _empathy("webhook-verify", "body.json", "--secret", "whsec_x", "--signature", sign("whsec_x", body),
                    cwd=tmp_path)
    assert good.returncode == 0 and "verified: job.done job abc (done)" in good.stdout
    bad = _empathy("webhook-verify", "body.json", "--secret", "whsec_y", "--signature", sign("whsec_x", body),
                   cwd=tmp_path)
    assert bad.returncode == 1 and "NOT verified: signature does not match" in bad.stderr
