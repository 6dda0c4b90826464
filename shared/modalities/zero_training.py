"""The zero-training modalities, as a plugin: ``EMPATHY_MODALITY_PLUGINS=shared.modalities.zero_training``.

``lexicon`` reads the valence of the recognised words from VADER's lexicon (:mod:`shared.modalities.lexicon`).
``expression`` reads the listener's facial expressions with FER's FER2013-trained classifier and a fixed
valence read-out (:mod:`shared.modalities.expression`, :mod:`training.models.expression`): nothing is trained
here, so it means something on a real face even where the only trained models are the bundled synthetic ones.
Its model is built, not trained (``python -m training.zero_training``; ``empathy analyze`` and
``python -m training.bootstrap`` build it when missing).

Off by default (a plugin, not a built-in): the default fusion weighs modules by their validation CCC on the
listener's own labels, which a zero-training model does not have (beside trained models it is weighed like
the weakest one, and the notes say so; alone, or with other zero-training modules only, the ``paper`` weight
of 1 each); enable it where the trained models are the synthetic bundled ones, or give it an explicit
weight (``--fusion audio=1,...,expression=1``). The bundled fusion model is fit over the trained modules only. As every plugin module, this one imports nothing of
the project at its top but the registry.
"""

from shared.registry import ModalityEntry

ENTRIES = [
    ModalityEntry("expression", paper_weight=1.0, batch_size=256, epochs=0, vision=True,
                  preprocessing="shared.modalities.expression:MODALITY", model_builder="training.models.expression",
                  summary="facial expression (zero training): tracked face, 64x64 grey -> FER2013 classifier "
                          "(fer package) -> valence by fixed circumplex weights"),
    ModalityEntry("lexicon", paper_weight=1.0, batch_size=512, epochs=0,
                  preprocessing="shared.modalities.lexicon:MODALITY", model_builder="training.models.lexicon",
                  summary="word valence (zero training): ASR words -> VADER valence of each rated word -> mean "
                          "over the last 5"),
]
