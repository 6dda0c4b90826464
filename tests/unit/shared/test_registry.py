"""The modality registry: one table from which modalities, weights, queues, workers and model builders follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.registry import BUILTIN, ModalityEntry, build_entries, entries, paper_weights, plugin_modules
from shared.settings import MODALITIES, PAPER_FUSION_WEIGHTS
from tests import REPO


def test_the_builtin_table_is_the_papers() -> None:
    assert MODALITIES == ("audio", "text", "face", "landmarks", "body") == tuple(e.name for e in entries())
    assert PAPER_FUSION_WEIGHTS == {"audio": 1.0, "text": 1.0, "body": 1.0, "landmarks": 0.4, "face": 0.1}
    assert paper_weights() == PAPER_FUSION_WEIGHTS
    audio = BUILTIN[0]
    assert (audio.queue, audio.servable, audio.model_server_variable) == ("audio", "audio", "EMPATHY_AUDIO_MODEL_SERVER")
    assert audio.preprocessing == "shared.modalities.audio:MODALITY"


@pytest.mark.parametrize("name", ["fusion", "vision", "Audio", "two words", ""])
def test_names_that_cannot_be_a_queue_or_a_variable_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="bad modality name"):
        ModalityEntry(name, paper_weight=1.0, batch_size=1)


def test_plugins_add_entries_and_names_stay_unique() -> None:
    assert plugin_modules({"EMPATHY_MODALITY_PLUGINS": " tests.toy_modality , ,"}) == ["tests.toy_modality"]
    extended = build_entries(["tests.toy_modality"])
    assert [e.name for e in extended] == [*MODALITIES, "brightness"]
    with pytest.raises(ValueError, match="declared twice: brightness"):
        build_entries(["tests.toy_modality", "tests.toy_modality"])
    with pytest.raises(ValueError, match="no ENTRIES"):
        build_entries(["tests"])


def test_everything_that_lists_modalities_follows_a_plugin() -> None:
    """In a process with the toy plugin: settings, weights, queues, routing, launcher, trainer and gateway."""
    probe = (
        "import json\n"
        "from shared.settings import MODALITIES, PAPER_FUSION_WEIGHTS\n"
        "from shared.modalities.base import get_modality\n"
        "from services.celery_app import QUEUES, route_task\n"
        "from shared.registry import vision_names\n"
        "from cli.up import WORKER_QUEUES\n"
        "from training.models import get_spec\n"
        "from jobs.request import JobRequest\n"
        "print(json.dumps({'modalities': MODALITIES, 'weight': PAPER_FUSION_WEIGHTS['brightness'],\n"
        "    'queues': QUEUES, 'vision': vision_names(), 'workers': WORKER_QUEUES,\n"
        "    'route': route_task('empathy.analyze_modality', (), {'modality': 'brightness'}, {}),\n"
        "    'class': type(get_modality('brightness')).__name__, 'builder': get_spec('brightness').module,\n"
        "    'job': JobRequest.from_form({'modalities': 'brightness,audio'}).modalities}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMPATHY_MODALITY_PLUGINS": "tests.toy_modality"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout)
    assert seen["modalities"] == [*MODALITIES, "brightness"] and seen["weight"] == 1.0
    assert seen["queues"] == seen["workers"] == [*MODALITIES, "brightness", "fusion", "vision"]
    assert seen["vision"] == ["face", "landmarks", "body"] and seen["route"] == {"queue": "brightness"}
    assert seen["class"] == "BrightnessModality" and seen["builder"] == "tests.toy_modality.model"
    assert seen["job"] == ["audio", "brightness"]  # the gateway accepts it, in the registry's order
