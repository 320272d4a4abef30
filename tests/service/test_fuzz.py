"""Schemathesis over the whole OpenAPI document against the real app (uvicorn, a real Redis, a real
onnxruntime refiner): no input makes a 500, and every answer is one the document describes, error
bodies included. Bounded: a fixed number of generated requests per operation, derandomised, so the
run takes well under a minute and fails the same way twice."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.settings import Settings
from models import ModelCard
from service.main import create_app
from tests.factories import live_server

EXAMPLES_PER_OPERATION = 30
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
"""Requests the schema allows, and requests it forbids (which must get a documented 4xx)."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    allow_header_conformance,
]
"""What the document promises. Not checked: whether the schema alone predicts acceptance (an
image must also decode, a dataset must exist), which no OpenAPI document can say."""


def small(case: Any) -> Any:
    """Simulating is real work (100,000 eyes take minutes): the fuzzer asks for few images."""
    count = case.body.get("count") if isinstance(case.body, dict) else None
    if isinstance(count, int | float) and not isinstance(count, bool) and count > 20:
        case.body["count"] = 20
    return case


@pytest.mark.timeout(180)
def test_fuzzing_every_operation_finds_no_server_error_and_no_answer_the_document_does_not_describe(
    jobs_settings: Settings, gray_model: ModelCard
) -> None:
    app = create_app(jobs_settings)
    failures: list[str] = []
    tried: dict[str, int] = {}
    with live_server(app) as client:
        base_url = str(client.base_url)
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        for result in schema.get_all_operations():
            operation = result.ok()

            @hypothesis.settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected, not raised
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(
                case=st.one_of(operation.as_strategy(generation_mode=mode).map(small) for mode in MODES)
            )
            def probe(case: Any) -> None:
                label = case.operation.label
                tried[label] = tried.get(label, 0) + 1
                response = case.call(base_url=base_url, timeout=30)
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:
                    failures.append(f"{label}: {group}")

            probe()
    assert len(tried) >= 20, tried  # every operation of the document was reached
    assert not failures, f"{len(failures)} failing answers:\n" + "\n".join(failures[:5])
