"""What the clients are generated from holds over real HTTP: schemathesis sends valid and
invalid requests to every operation of the live server's /openapi.json, and each answer has
a documented status, content type, body and headers."""

import httpx2
import pytest
import schemathesis
from schemathesis import GenerationMode

from tests.clients.conftest import LiveApi
from tests.hardening.conftest import register_and_login
from tests.hardening.fuzz import fuzz_every_operation

# In-process fuzzing (tests/hardening) sends more; this run checks the real server's wire.
MAX_EXAMPLES_PER_OPERATION = 8


@pytest.fixture(scope="module")
def fuzzing_superuser(live_api: LiveApi) -> dict[str, str]:
    """A superuser of its own, promoted by the first one: whatever the fuzzer does to it
    (a new email, a deleted account) leaves the first superuser to the other tests."""
    with httpx2.Client(base_url=live_api.base_url) as client:
        headers = register_and_login(live_api.base_url, client)
        me = client.get("/api/v1/users/me", headers=headers).json()
        tokens = client.post(
            "/api/v1/auth/login",
            data={"username": live_api.admin_email, "password": live_api.admin_password},
        ).json()
        promoted = client.patch(
            f"/api/v1/users/{me['id']}",
            json={"is_superuser": True},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert promoted.status_code == 200, promoted.text
    return headers


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_live_answer_conforms_to_the_document(
    live_api: LiveApi, fuzzing_superuser: dict[str, str], mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    run = fuzz_every_operation(schema, mode, fuzzing_superuser, MAX_EXAMPLES_PER_OPERATION)

    print(f"\nlive server, {run.summary(mode)}")
    assert set(run.sent) | set(run.unnegatable) == run.operations
    if mode is GenerationMode.POSITIVE:
        assert {200, 201, 204} <= set(run.statuses), "valid requests should mostly succeed"
