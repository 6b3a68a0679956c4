"""Schemathesis hooks (SCHEMATHESIS_HOOKS) for fuzzing a live server as one kind of caller:
every request carries the access token of an account made for the run, never one the test
itself signs in with, and none reaches the account that promotes the admins (an admin
fuzzer finds its id in GET /users and would delete it).

The fuzzer may delete, deactivate or demote the account it speaks for (DELETE /users/me,
PATCH /users/{id} with its own id, a new password). So the token is replaced by a new
account's every few seconds, and at once when a request answers 401. Read from the
environment, set by tests/hardening/test_fuzzing_production.py:

FUZZ_BASE_URL        the server
FUZZ_CALLER          `user` (a plain member) or `admin` (a member holding `admin`)
FUZZ_ADMIN_EMAIL     the account that promotes each `admin` caller; the fuzzer never holds
FUZZ_ADMIN_PASSWORD  its token
"""

import functools
import os
import secrets
import uuid
from typing import Any

import httpx2
import schemathesis

BASE_URL = os.environ.get("FUZZ_BASE_URL", "")
CALLER = os.environ.get("FUZZ_CALLER", "user")
ADMIN_EMAIL = os.environ.get("FUZZ_ADMIN_EMAIL", "")
ADMIN_PASSWORD = os.environ.get("FUZZ_ADMIN_PASSWORD", "")

# Short enough that an account the fuzzer demoted (a 403 is no reason to sign in again: a
# plain user gets it by design) speaks for it only a few seconds.
ACCOUNT_LIFETIME_SECONDS = 5


def sign_in(client: httpx2.Client, email: str, password: str) -> str:
    tokens = client.post("/api/v1/auth/login", data={"username": email, "password": password})
    assert tokens.status_code == 200, tokens.text
    access_token: str = tokens.json()["access_token"]
    return access_token


def new_account_token(client: httpx2.Client) -> str:
    """A new account of the kind FUZZ_CALLER names, signed in: its access token."""
    email = f"fuzz-{CALLER}-{secrets.token_hex(8)}@example.com"
    password = secrets.token_urlsafe(16)
    created = client.post(
        "/api/v1/auth/register", json={"name": "Fuzz", "email": email, "password": password}
    )
    assert created.status_code == 201, created.text
    if CALLER == "admin":
        promoter = sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        promoted = client.put(
            f"/api/v1/users/{created.json()['id']}/roles",
            json={"roles": ["admin", "member"]},
            headers={"Authorization": f"Bearer {promoter}"},
        )
        assert promoted.status_code == 200, promoted.text
    return sign_in(client, email, password)


@functools.cache
def promoter_id() -> str:
    with httpx2.Client(base_url=BASE_URL, timeout=30) as client:
        token = sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        promoter: str = me.json()["id"]
        return promoter


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A request about the promoting account goes to an account that does not exist."""
    if CALLER == "admin" and (case.path_parameters or {}).get("user_id") == promoter_id():
        case.path_parameters = {**case.path_parameters, "user_id": str(uuid.uuid4())}


@schemathesis.auth(refresh_interval=ACCOUNT_LIFETIME_SECONDS, retry_on=[401]).apply_to(
    path_regex="^/api/v1/(users|roles|permissions|api-keys|audit-events)"
)
class FuzzingAccount:
    def get(self, case: Any, context: Any) -> str:
        with httpx2.Client(base_url=BASE_URL, timeout=30) as client:
            return new_account_token(client)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
