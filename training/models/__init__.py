"""The modality models: which builder to call and with which training defaults, one per registry entry.

The generic trainer (:mod:`training.trainer`) knows nothing about any one modality: it looks the modality
up here, and this table follows from the modality registry (:mod:`shared.registry`, plugins included).
A modality's builder module (``training.models.<name>`` unless its entry names another) exposes::

    def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int, **hparams) -> keras.Model

``input_shapes`` are the per-window shapes of ``Windows.inputs`` (no batch axis; the keras ``Input`` names
must be these keys, they become the SavedModel's ``serving_default`` input names); ``n_subjects`` is the
number of training subjects (a subject embedding has ``n_subjects + 1`` rows, row 0 = unknown, see
``shared.modalities.base.subject_index``; builders without one ignore it). The builder's keyword defaults
are the paper's architecture; ``hparams`` override them (tests pass tiny sizes). The output is linear,
shape (batch, 1) for one label per window or (batch, k) for k labels per window (audio: 200).

Training hyperparameters that the paper fixes (batch size, optimiser) are part of the registry entry;
everything here can be overridden from ``empathy train`` (``--batch-size``, ``--epochs``, ``--lr``, ``--hparam k=v``).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.registry import ModalityEntry, entries

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ModelSpec:
    """Training defaults of one modality (paper values where the paper gives them)."""

    modality: str
    batch_size: int
    learning_rate: float = 1e-3
    epochs: int = 200
    patience: int = 10  # early stopping: epochs without a better validation CCC
    builder_module: str = ""  # the module exposing build_model; empty: training.models.<modality>

    @classmethod
    def of(cls, modality: ModalityEntry) -> ModelSpec:
        """The training defaults a registry entry declares."""
        return cls(modality.name, batch_size=modality.batch_size, learning_rate=modality.learning_rate,
                   epochs=modality.epochs, patience=modality.patience, builder_module=modality.model_builder)

    @property
    def module(self) -> str:
        return self.builder_module or f"training.models.{self.modality}"

    def builder(self) -> Any:
        return importlib.import_module(self.module).build_model

    def default_hparams(self) -> dict[str, Any]:
        """The builder's keyword defaults: the architecture the paper describes."""
        params = inspect.signature(self.builder()).parameters.values()
        return {p.name: p.default for p in params
                if p.kind == p.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}

    def build(self, input_shapes: dict[str, tuple[int, ...]], n_subjects: int, **hparams: Any) -> keras.Model:
        return self.builder()(input_shapes, n_subjects, **hparams)


SPECS: dict[str, ModelSpec] = {modality.name: ModelSpec.of(modality) for modality in entries()}


def get_spec(modality: str) -> ModelSpec:
    if modality not in SPECS:
        raise ValueError(f"no model registered for {modality!r}; expected one of {', '.join(SPECS)}")
    return SPECS[modality]
