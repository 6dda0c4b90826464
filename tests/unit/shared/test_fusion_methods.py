"""Fusion methods are declared once (shared.fusion_methods): a method added there is accepted by the job
request, listed in the OpenAPI enum and the help texts, resolved by fusion and evaluated by ``empathy evaluate``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.openapi import spec
from jobs.request import JobRequest
from shared.fusion import resolve
from shared.fusion_methods import FusionMethod, describe, method_names, register, unregister
from training.evaluate import fusions_to_evaluate


@pytest.fixture
def uniform() -> Iterator[str]:
    register(FusionMethod("uniform", "every module alike", lambda metadata: (dict.fromkeys(metadata, 1.0), [])))
    yield "uniform"
    unregister("uniform")


def _form_fusion(document: dict) -> dict:
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    return body["properties"]["fusion"]


def test_the_builtin_methods() -> None:
    assert method_names() == ("paper", "ccc", "learned")
    assert _form_fusion(spec())["anyOf"][0]["enum"] == ["paper", "ccc", "learned"]
    assert fusions_to_evaluate(None, None) == ["paper", "ccc"]  # learned needs a fitted fusion model


def test_a_new_method_is_everywhere_methods_are_listed(uniform: str) -> None:
    assert uniform in _form_fusion(spec())["anyOf"][0]["enum"]
    assert uniform in _form_fusion(spec())["description"] and f"'{uniform}' (every module alike)" in describe()
    assert JobRequest.from_form({"fusion": uniform}).fusion == uniform
    assert uniform in fusions_to_evaluate(None, None)
    plan = resolve(uniform, {"audio": {"val_ccc": 0.9}, "face": {"val_ccc": 0.1}}, None)
    assert plan.method == uniform and plan.weights == {"audio": 1.0, "face": 1.0}


def test_a_method_needing_a_model_names_a_fallback() -> None:
    with pytest.raises(ValueError, match="fallback"):
        register(FusionMethod("fitted", "x", lambda metadata: ({}, []), needs_model=True, fallback="nope"))
    with pytest.raises(ValueError, match="duplicate"):
        register(FusionMethod("ccc", "again", lambda metadata: ({}, [])))
    assert "fitted" not in method_names()
