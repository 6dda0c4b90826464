"""The API fuzzed from its own OpenAPI document (schemathesis), bounded: no 5xx, and every answer as the
document says (status codes, content types, headers, bodies). Runs in ``make test``: ~25 cases an operation,
derandomized, so a failure reproduces."""

from __future__ import annotations

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import create_app
from tests.ensemble_support import bearer, environment

EXAMPLES = 25  # per operation
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def test_the_api_fuzzed_from_its_schema_answers_as_documented(env) -> None:  # noqa: ANN001
    with environment({**env, "EMPATHY_AUTH_FAILURE_LIMIT": "0"}):  # 404s must not turn into 429s here
        app = create_app()
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12  # every operation of the document
    # /readyz answers its documented 503 here (no model server runs): readiness is tested on its own
    operations = [op for op in operations if op.label != "GET /readyz"]
    calls: dict[str, set[int]] = {}
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=bearer("alice"), checks=CHECKS)
            calls.setdefault(case.operation.label, set()).add(response.status_code)

        fuzz()
    print({label: sorted(codes) for label, codes in calls.items()})
    assert calls["POST /v1/jobs"] - {200, 202} and all(code < 500 for codes in calls.values() for code in codes)
