"""Command-line parts of the gateway package that need no running ensemble."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cli.up import parse_workers
from tests.ensemble_support import REPO, write_tiny_video


def test_workers_scaling_spec() -> None:
    counts = parse_workers("landmarks=3, face=2")
    assert counts["landmarks"] == 3 and counts["face"] == 2 and counts["audio"] == 1 and counts["fusion"] == 1
    for bad in ("landmarks", "smell=2", "face=0", "face=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_workers(bad)


def _empathy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_up_and_analyze_refuse_to_start_without_models(tmp_path: Path) -> None:
    result = _empathy("up", "--models-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2 and "training.bootstrap" in result.stderr
    video = write_tiny_video(tmp_path / "clip.mp4")
    result = _empathy("analyze", str(video), "--models-dir", str(tmp_path / "none"), "--no-build", cwd=tmp_path)
    assert result.returncode == 2 and "no model for audio" in result.stderr


def test_submit_reports_an_unreachable_gateway(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4")
    result = _empathy("submit", str(video), "--gateway", "http://127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 2 and "cannot reach the gateway" in result.stderr


def test_a_malformed_listener_region_is_refused_before_any_work(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4")
    for command in ("analyze", "submit"):
        result = _empathy(command, str(video), "--listener", "0.6,0,0.5,1", cwd=tmp_path)
        assert result.returncode == 2 and "--listener" in result.stderr and "0 <= x0 < x1 <= 1" in result.stderr
