"""Shared machinery for the hardening suite: what a response must never contain, and real
servers (uvicorn in a subprocess) on databases of their own, for the tests that need real
concurrency or a database that goes away."""

import secrets

import httpx2

# Text that only shows up in a response when internals escape: stack traces, driver and ORM
# names, SQL, bcrypt hashes, column names.
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "sqlalchemy",
    "psycopg2",
    "SELECT ",
    "$2b$",
    "hashed_password",
)


def assert_no_leak(response: httpx2.Response, *secrets_sent: str) -> None:
    """Nothing internal, and nothing the client sent as a secret, comes back."""
    text = response.text
    for marker in (*LEAK_MARKERS, *secrets_sent):
        assert marker not in text, (response.status_code, marker, text[:500])


def register_and_login(base_url: str, client: httpx2.Client) -> dict[str, str]:
    """A new account on a live server; returns the Authorization header for it."""
    email = f"live-{secrets.token_hex(6)}@example.com"
    password = secrets.token_urlsafe(12)
    created = client.post(
        f"{base_url}/api/v1/auth/register",
        json={"name": "Live", "email": email, "password": password},
    )
    assert created.status_code == 201, created.text
    tokens = client.post(
        f"{base_url}/api/v1/auth/login", data={"username": email, "password": password}
    )
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}
