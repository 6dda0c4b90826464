"""The fusion methods, declared once: each one's name, how it gets its weights, whether it needs a fitted model.

Everything that names fusion methods reads this table: the validation of a job's ``fusion`` field and of
``EMPATHY_FUSION_WEIGHTS`` (:func:`check_spec`), their help texts (:func:`describe`), the OpenAPI form's enum
(``jobs.request``), :func:`shared.fusion.resolve`, fusion training (cut-off and band fitted per method),
``empathy evaluate``'s tables and the fusion benchmark. Adding a method is one :func:`register` call here
(or in a module imported before the method is used) and, where the weights need more than the models'
metadata, the code that makes them.

A specification is a method name or explicit weights (``audio=1,text=0.5``: unlisted modules get 0).

This module imports nothing of the project but the modality registry: ``shared.settings`` reads its help text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.registry import modality_names, paper_weights

# metadata (modality -> model metadata) -> (weights per modality, not normalised; notes for the result)
WeightRule = Callable[[Mapping[str, Mapping[str, Any]]], tuple[dict[str, float], list[str]]]
EXPLICIT = "audio=1,text=0.5,..."  # how explicit weights are shown in help texts


@dataclass(frozen=True)
class FusionMethod:
    """One fusion method. ``weights``: its weights from the loaded models' metadata. ``needs_model``: it is
    fitted by ``empathy train fusion`` (models/fusion); without a fitted one it falls back to ``fallback``,
    which a note in the result names. ``summary``: a few words for help texts."""

    name: str
    summary: str
    weights: WeightRule
    needs_model: bool = False
    fallback: str = ""


_METHODS: dict[str, FusionMethod] = {}


def register(method: FusionMethod) -> FusionMethod:
    """Add a method (names are unique; a name with ``=`` or ``,`` would read as explicit weights)."""
    if not method.name.isidentifier() or method.name in _METHODS:
        raise ValueError(f"bad or duplicate fusion method name {method.name!r}")
    if method.needs_model and method.fallback not in _METHODS:
        raise ValueError(f"fusion method {method.name!r} needs a fallback among {list(_METHODS)}")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (tests that register a fake one)."""
    _METHODS.pop(name, None)


def methods() -> tuple[FusionMethod, ...]:
    return tuple(_METHODS.values())


def method_names() -> tuple[str, ...]:
    return tuple(_METHODS)


def get_method(name: str) -> FusionMethod | None:
    """The method of that name; None for anything else (explicit weights)."""
    return _METHODS.get(name.strip())


def describe() -> str:
    """The help text of a fusion specification: every method with its summary, then explicit weights."""
    listed = ", ".join(f"'{m.name}' ({m.summary})" for m in methods())
    return f"{listed} or explicit '{EXPLICIT}'"


def choices() -> str:
    """The short form: ``ccc | paper | learned | audio=1,text=0.5,...``."""
    return " | ".join([*method_names(), EXPLICIT])


# ----------------------------------------------------------------------------------- weights
MAX_CCC_FOR_WEIGHT = 0.99  # a validation CCC of 1 would give one module all the weight


def weight_from_ccc(score: float) -> float:
    """Fusion weight of a module with validation CCC ``score``: ``rho^2 / (1 - rho^2)``, rho clipped to [0, 0.99].

    Why not "proportional to the CCC" (the paper's words)? If a module is the truth plus independent noise,
    its correlation rho with the truth fixes the noise-to-signal variance ratio at ``(1 - rho^2) / rho^2``,
    and the minimum-variance average weighs each module by the inverse of it. For modules of similar quality
    (the paper's 0.12-0.32) both rules rank alike; for modules far apart (bundled models: 0.50 to 0.98)
    proportional weights let the weak ones drag the fusion down (held-out CCC 0.81 against 0.89 measured,
    docs/fusion.md).
    """
    rho = min(max(float(score), 0.0), MAX_CCC_FOR_WEIGHT)
    return rho * rho / (1.0 - rho * rho)


def ccc_weights(metadata: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """Weights from each model's validation CCC (``val_ccc_filtered``, else ``val_ccc``) by :func:`weight_from_ccc`.

    A model whose metadata records no validation CCC gets the smallest weight recorded for the others (it has
    not shown it is better than the weakest) and a note names it; when no model records one, the paper's
    coefficients are used for all, again with a note. Returns ``(weights, notes)``.
    """
    if not metadata:
        raise ValueError("fusion weights 'ccc' need the models' metadata (val_ccc)")
    paper = paper_weights()
    recorded: dict[str, float] = {}
    missing: list[str] = []
    for name, meta in metadata.items():
        score = meta.get("val_ccc_filtered", meta.get("val_ccc"))
        if score is None or not math.isfinite(float(score)):
            missing.append(name)
        else:
            recorded[name] = weight_from_ccc(float(score))
    if not recorded:
        notes = [f"fusion 'ccc': no model records a validation CCC ({', '.join(missing)}): the paper's "
                 "coefficients are used instead"]
        return {name: paper.get(name, 0.0) for name in missing}, notes
    notes = []
    fallback = min(recorded.values())
    for name in missing:
        recorded[name] = fallback
        notes.append(f"fusion 'ccc': model {name!r} records no validation CCC: weighted like the weakest "
                     f"recorded module (weight {fallback:.3g})")
    for name, weight in recorded.items():
        if weight <= 0 and name not in missing:
            notes.append(f"fusion 'ccc': model {name!r} did not beat chance on validation (CCC "
                         f"{float(metadata[name].get('val_ccc_filtered', metadata[name].get('val_ccc'))):.3g}): "
                         "weight 0, not fused")
    return {name: recorded[name] for name in metadata}, notes


def _paper_rule(metadata: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, float], list[str]]:
    return paper_weights(), []


def _ccc_rule(metadata: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, float], list[str]]:
    if not metadata:
        return paper_weights(), ["fusion 'ccc': no model metadata available: the paper's coefficients are used "
                                 "instead"]
    return ccc_weights(metadata)


register(FusionMethod("paper", "the paper's coefficients 1,1,1,0.4,0.1", _paper_rule))
register(FusionMethod("ccc", "weights from each model's validation CCC, the paper's rule", _ccc_rule))
register(FusionMethod("learned", "the ridge fusion of models/fusion, from `empathy train fusion`", _ccc_rule,
                      needs_model=True, fallback="ccc"))


def parse_weights(spec: str, metadata: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, float]:
    """Fusion weights from a specification: a method's weights (:attr:`FusionMethod.weights` of ``metadata``,
    modality -> model metadata) or explicit ``audio=1,text=2`` (unlisted modules get 0). Not normalised:
    :func:`shared.fusion.fuse` normalises over the modules actually present."""
    spec = spec.strip()
    method = get_method(spec)
    if method is not None:
        return method.weights(metadata or {})[0]
    known = modality_names()
    weights = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ValueError(f"bad fusion weight {part!r} in {spec!r}: expected {choices()}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"fusion weight of {name!r} is not a number: {value.strip()[:20]!r}") from None
        if not math.isfinite(weights[name]) or weights[name] < 0:  # inf/nan reached the result and broke its JSON
            raise ValueError(f"fusion weight of {name!r} must be a finite number >= 0, got {value.strip()[:20]}")
    if not any(weights.values()):
        raise ValueError(f"fusion weights {spec!r} are all zero: no module would be fused")
    return weights


def weights_pattern() -> str:
    """Explicit weights as a regular expression (the OpenAPI form's): registered modality names, decimal
    weights. Stricter than :func:`parse_weights` (no exponents, no spaces), never looser."""
    names = "|".join(modality_names())
    number = r"[0-9]{1,6}(\.[0-9]{1,6})?"
    return rf"^({names})={number}(,({names})={number})*$"


def check_spec(spec: str) -> str:
    """Validate a fusion specification (a method name or explicit weights); returns it stripped."""
    spec = spec.strip()
    if get_method(spec) is None:
        parse_weights(spec)
    return spec
