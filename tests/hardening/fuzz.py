"""Schemathesis run by hand over every operation of a document: a bounded, derandomized
number of cases each, every response checked against what the document says."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.schemas import OpenApiSchema

# Every answer, to valid and invalid input alike, is one the document lists for that
# operation, with the documented content type, body and headers, and never a 500.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass
class FuzzRun:
    operations: set[str] = field(default_factory=set)
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    # Operations with nothing to make invalid (no parameters, no body).
    unnegatable: list[str] = field(default_factory=list)

    def summary(self, mode: GenerationMode) -> str:
        return (
            f"schemathesis {version('schemathesis')} {mode.value}: "
            f"{sum(self.sent.values())} requests over {len(self.sent)} operations, "
            f"statuses {dict(self.statuses)}"
            + (f"; nothing to negate in {self.unnegatable}" if self.unnegatable else "")
        )


def fuzz_every_operation(
    schema: OpenApiSchema,
    mode: GenerationMode,
    headers: dict[str, str],
    max_examples: int,
    after_each: Callable[[], None] = lambda: None,
) -> FuzzRun:
    """Send up to `max_examples` generated requests to each operation; the first response
    that fails a conformance check raises, naming the operation and the request.
    `after_each` runs after every request (an in-process app waits for its jobs there)."""
    run = FuzzRun()
    operations: list[APIOperation[Any, Any, Any, Any]] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    run.operations = {operation.label for operation in operations}

    # Deletes last: once the caller has deleted their own account, every later operation
    # could only answer 401.
    for operation in sorted(operations, key=lambda operation: operation.method == "delete"):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Case[APIOperation[Any, Any, Any, Any]]) -> None:
            response = case.call_and_validate(headers=headers, checks=CONFORMANCE)
            after_each()
            run.sent[case.operation.label] += 1
            run.statuses[response.status_code] += 1

        try:
            exercise()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label
            run.unnegatable.append(operation.label)
    return run
