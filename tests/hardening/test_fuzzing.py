"""Property-based fuzzing of every operation in the app's own OpenAPI document (schemathesis),
in-process, as a superuser, on the test's rolled-back transaction. tests/clients runs the
same checks against a live server."""

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import GenerationMode

from tests.conftest import Account, run_jobs
from tests.hardening.fuzz import fuzz_every_operation

MAX_EXAMPLES_PER_OPERATION = 25


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_fails_a_check(app: FastAPI, superuser: Account, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    run = fuzz_every_operation(
        schema, mode, superuser.headers, MAX_EXAMPLES_PER_OPERATION, lambda: run_jobs(app)
    )

    print(f"\n{run.summary(mode)}")
    assert len(run.operations) >= 12
    assert set(run.sent) | set(run.unnegatable) == run.operations
