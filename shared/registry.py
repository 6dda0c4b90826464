"""The topology declared once: every modality the system knows, and what follows from each.

One :class:`ModalityEntry` per modality. Everything that lists modalities reads this table instead of
keeping its own list: ``shared.settings.MODALITIES`` and ``PAPER_FUSION_WEIGHTS``,
:func:`shared.modalities.base.get_modality`, the Celery queues and routing (``services/celery_app.py``),
the worker entry point (``python -m services.worker <queue>``), the ``empathy up`` supervisor, the
gateway's validation, the training model builders (``training/models``) and the compose files
(``python -m scripts.compose_files`` writes them; a test checks the committed ones are what it writes).

A modality's Celery queue, its model folder (``models/<name>/<version>/``), its servable name on the
model server and its compose services (``<name>``, ``<name>-serving``) all carry its name: one fewer
thing to keep in step.

Adding a modality: one entry here (or in a plugin), one modality class (``prepare``/``to_frames``/
``default_params``, module ``shared.modalities.<name>`` by default) and one model builder (``build_model``,
module ``training.models.<name>`` by default). A **plugin** is a module named in
``EMPATHY_MODALITY_PLUGINS`` (comma-separated) whose module-level ``ENTRIES`` lists more entries; it is read
once, the first time the table is needed in a process. A plugin module must import nothing of the project
but this module at its top (the table is built while ``shared.settings`` is being imported): its classes
are named by ``"module:attribute"`` paths in the entry and imported when first used.

This module imports nothing of the project (``shared.settings`` imports it).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

PLUGINS_VARIABLE = "EMPATHY_MODALITY_PLUGINS"
FUSION_QUEUE = "fusion"  # the chord callback: fuses the stored series of a job (no model server)
# Optional (EMPATHY_VISION_WORKER=on): every vision modality of a job as one task, prepared from one decode.
VISION_QUEUE = "vision"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*$")  # becomes a queue, a folder, EMPATHY_<NAME>_MODEL_SERVER, a service


@dataclass(frozen=True)
class ModalityEntry:
    """One modality: what the services, the launcher, compose, fusion and training need to know about it.

    ``paper_weight``: its coefficient in the ``paper`` fusion preset. ``batch_size``, ``learning_rate``,
    ``patience`` and ``epochs``: its training defaults (the paper's where it gives them; ``empathy train``
    overrides each). ``vision``: it reads the listener region's grey frames, so ``empathy analyze`` and the
    vision worker decode the video once for all such modalities and predict on every k-th frame
    (``EMPATHY_PREDICT_EVERY``). ``preprocessing``: ``"module:attribute"`` of its Modality object
    (default ``shared.modalities.<name>:MODALITY``). ``model_builder``: the module whose ``build_model``
    builds its Keras model (empty: ``training.models.<name>``). ``summary``: one line for people.
    """

    name: str
    paper_weight: float
    batch_size: int
    learning_rate: float = 1e-3
    patience: int = 10
    epochs: int = 200
    vision: bool = False
    preprocessing: str = ""
    model_builder: str = ""
    summary: str = ""

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name) or self.name in (FUSION_QUEUE, VISION_QUEUE):
            raise ValueError(f"bad modality name {self.name!r}: lower-case letters and digits, not "
                             f"{FUSION_QUEUE!r} or {VISION_QUEUE!r}")
        if self.paper_weight < 0 or self.batch_size < 1:
            raise ValueError(f"modality {self.name!r}: paper_weight must be >= 0 and batch_size >= 1")
        if not self.preprocessing:
            object.__setattr__(self, "preprocessing", f"shared.modalities.{self.name}:MODALITY")

    @property
    def queue(self) -> str:
        """Its Celery queue (one worker service per queue; scaled on its own)."""
        return self.name

    @property
    def servable(self) -> str:
        """Its model's name on the model server, and its folder under the models directory."""
        return self.name

    @property
    def model_server_variable(self) -> str:
        """The environment variable with the gRPC address of its model server."""
        return f"EMPATHY_{self.name.upper()}_MODEL_SERVER"


# Paper fusion coefficients: the authors' code (1, 1, 1, 0.4, 0.1, normalised by their sum). Batch sizes: the
# paper's (Sec. II). Learning rates and patience: the authors' code where it gives them (speech and lexicons:
# Adam 1e-4, patience 5); otherwise Keras' Adam default.
BUILTIN: tuple[ModalityEntry, ...] = (
    ModalityEntry("audio", paper_weight=1.0, batch_size=50, learning_rate=1e-4, patience=5,
                  summary="speech: 16 kHz audio -> high-pass, pre-emphasis, 8 s slices, STFT^(2/3) -> BiGRU "
                          "(200 values per slice)"),
    ModalityEntry("text", paper_weight=1.0, batch_size=500, learning_rate=1e-4, patience=5,
                  summary="words: ASR (or an uploaded transcript) -> 11-dim lexicon vectors per word -> LSTM + "
                          "attention + subject embedding"),
    ModalityEntry("face", paper_weight=0.1, batch_size=64, vision=True,
                  summary="raw face: tracked face crops, 10x48x48 grey windows -> 3D conv blocks + subject "
                          "embedding"),
    ModalityEntry("landmarks", paper_weight=0.4, batch_size=512, vision=True,
                  summary="landmarks: dlib 68 points per frame, 25x136 windows -> 1D CNN"),
    ModalityEntry("body", paper_weight=1.0, batch_size=128, vision=True,
                  summary="full body: fixed listener crop, 16 frames at 5 fps x 128x128 -> 3D ResNet"),
)


def plugin_modules(environ: dict[str, str] | None = None) -> list[str]:
    """The modules named in ``EMPATHY_MODALITY_PLUGINS`` (comma-separated, blanks ignored)."""
    raw = (os.environ if environ is None else environ).get(PLUGINS_VARIABLE, "")
    return [part.strip() for part in raw.split(",") if part.strip()]


def build_entries(plugins: list[str]) -> tuple[ModalityEntry, ...]:
    """The built-in entries followed by those of each plugin module, in order; names must be unique."""
    found = list(BUILTIN)
    for module_name in plugins:
        module = importlib.import_module(module_name)
        extra = getattr(module, "ENTRIES", None)
        if not isinstance(extra, (list, tuple)) or not all(isinstance(e, ModalityEntry) for e in extra):
            raise ValueError(f"{PLUGINS_VARIABLE}: module {module_name!r} has no ENTRIES list of ModalityEntry")
        found.extend(extra)
    names = [e.name for e in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"modality names declared twice: {', '.join(duplicates)}")
    return tuple(found)


@lru_cache(maxsize=1)
def entries() -> tuple[ModalityEntry, ...]:
    """Every modality of this process (built-ins, then plugins), built once on first use."""
    return build_entries(plugin_modules())


def modality_names() -> tuple[str, ...]:
    """The modality names, in the canonical order (results, CSV columns, fusion)."""
    return tuple(e.name for e in entries())


def entry(name: str) -> ModalityEntry:
    """The entry of ``name``; ValueError naming the known modalities otherwise."""
    for candidate in entries():
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown modality {name!r}; expected one of {', '.join(modality_names())}")


def paper_weights() -> dict[str, float]:
    """The ``paper`` fusion preset: each modality's coefficient."""
    return {e.name: e.paper_weight for e in entries()}


def vision_names() -> tuple[str, ...]:
    """The modalities that read the listener region's frames (decoded once for all of them)."""
    return tuple(e.name for e in entries() if e.vision)


def worker_queues() -> tuple[str, ...]:
    """Every Celery queue: one per modality, then fusion and the optional vision queue."""
    return (*(e.queue for e in entries()), FUSION_QUEUE, VISION_QUEUE)


def load_object(path: str) -> Any:
    """The object a ``"module:attribute"`` path names (imported on first use)."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "MODALITY")
