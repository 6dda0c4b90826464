"""A toy sixth modality, added without editing the project: ``EMPATHY_MODALITY_PLUGINS=tests.toy_modality``.

What adding a modality takes, all here: one registry entry (:data:`ENTRIES`), one modality class
(:mod:`tests.toy_modality.brightness`) and one model builder (:mod:`tests.toy_modality.model`).
tests/integration/test_toy_modality.py trains it through ``empathy train`` and runs it through ``empathy
analyze`` and the ensemble (``empathy up``). As every plugin module, this one imports nothing of the project at
its top but the registry: the registry reads it while ``shared.settings`` is being imported.
"""

from shared.registry import ModalityEntry

ENTRIES = [
    ModalityEntry("brightness", paper_weight=1.0, batch_size=256, learning_rate=1e-2, patience=3, epochs=3,
                  preprocessing="tests.toy_modality.brightness:MODALITY", model_builder="tests.toy_modality.model",
                  summary="toy: mean brightness of the listener region over the last frames -> two Dense layers"),
]
