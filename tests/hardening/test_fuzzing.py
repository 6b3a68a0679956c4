"""Property-based fuzzing of every operation in the app's own OpenAPI document (schemathesis),
in-process, as a superuser, on the test's rolled-back transaction."""

from collections import Counter
from importlib.metadata import version
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from tests.conftest import Account

MAX_EXAMPLES_PER_OPERATION = 25
CHECKS = {
    GenerationMode.POSITIVE: [
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    ],
    # Invalid input may meet a 400 from the framework's body parser (bytes that are not
    # UTF-8), which no operation documents; everything else must still hold.
    GenerationMode.NEGATIVE: [not_a_server_error, response_schema_conformance],
}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_fails_a_check(app: FastAPI, superuser: Account, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    unnegatable: list[str] = []
    operations: list[APIOperation[Any, Any, Any, Any]] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Case[APIOperation[Any, Any, Any, Any]]) -> None:
            response = case.call_and_validate(headers=superuser.headers, checks=CHECKS[mode])
            sent[case.operation.label] += 1
            statuses[response.status_code] += 1

        try:
            exercise()
        except Unsatisfiable:
            # Nothing to negate (no parameters, no body): the positive run covers it.
            assert mode is GenerationMode.NEGATIVE, operation.label
            unnegatable.append(operation.label)

    print(
        f"\nschemathesis {version('schemathesis')} {mode.value}: "
        f"{sum(sent.values())} requests over {len(sent)} operations, statuses {dict(statuses)}"
        + (f"; nothing to negate in {unnegatable}" if unnegatable else "")
    )
    assert set(sent) | set(unnegatable) == {operation.label for operation in operations}
