"""Property-based fuzzing of every operation in the app's own OpenAPI document (schemathesis),
in-process, as a superuser, on the test's rolled-back transaction. tests/clients runs the
same checks against a live server."""

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import GenerationMode

from tests.conftest import JOBS_IDLE_TIMEOUT_SECONDS, Account
from tests.hardening.fuzz import fuzz_every_operation

MAX_EXAMPLES_PER_OPERATION = 25


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_fails_a_check(app: FastAPI, superuser: Account, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    def wait_for_jobs() -> None:
        # A job (a mail) shares the test's one connection: it finishes before the next call.
        assert app.state.jobs.wait_idle(JOBS_IDLE_TIMEOUT_SECONDS)

    run = fuzz_every_operation(
        schema, mode, superuser.headers, MAX_EXAMPLES_PER_OPERATION, wait_for_jobs
    )

    print(f"\n{run.summary(mode)}")
    assert len(run.operations) >= 12
    assert set(run.sent) | set(run.unnegatable) == run.operations
