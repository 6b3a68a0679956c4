"""Hostile input is refused with a 4xx, stored literally when it is merely odd, and never
reaches a 500, the database driver, or the response."""

import json
from collections.abc import Callable, MutableMapping
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from tests.conftest import Account
from tests.hardening.conftest import assert_no_leak

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"
USERS = "/api/v1/users"
SECRET_PASSWORD = "Echo-Me-Never-9137"

NUL_EMAILS = ["nul\x00byte@example.com", "trailing-nul@example.com\x00"]
INVALID_EMAILS = [
    "no-at-sign.example.com",
    "two@@example.com",
    "a@b@example.com",
    "x" * 250 + "@example.com",
    *NUL_EMAILS,
    "",
    "@example.com",
    "local@",
    "spa ce@example.com",
    "ctrl\x01@example.com",
]


def assert_client_error(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "detail" in response.json()
    assert_no_leak(response, SECRET_PASSWORD)


class TestEmails:
    @pytest.mark.parametrize("email", INVALID_EMAILS)
    def test_invalid_email_is_422_on_every_route_that_stores_one(
        self, client: TestClient, superuser: Account, account: Account, email: str
    ) -> None:
        attempts = [
            client.post(REGISTER, json={"name": "A", "email": email, "password": SECRET_PASSWORD}),
            client.patch(
                ME,
                headers=account.headers,
                json={"email": email, "current_password": account.password},
            ),
            client.post(
                USERS,
                headers=superuser.headers,
                json={"name": "A", "email": email, "password": SECRET_PASSWORD},
            ),
            client.patch(f"{USERS}/{account.id}", headers=superuser.headers, json={"email": email}),
        ]
        for response in attempts:
            assert response.status_code == 422, (response.request.url, response.text)
            assert_no_leak(response, SECRET_PASSWORD)

    @pytest.mark.parametrize(
        "email",
        INVALID_EMAILS,
    )
    def test_invalid_email_at_login_is_a_plain_401_or_422(
        self, client: TestClient, email: str
    ) -> None:
        response = client.post(LOGIN, data={"username": email, "password": SECRET_PASSWORD})
        assert response.status_code in (401, 422), response.text
        assert_no_leak(response, SECRET_PASSWORD)


class TestNulBytes:
    @pytest.mark.parametrize("name", ["nul\x00name", "\x00", "bell\x07"])
    def test_control_characters_in_a_name_are_422(
        self, client: TestClient, account: Account, name: str
    ) -> None:
        registered = client.post(
            REGISTER, json={"name": name, "email": "n@example.com", "password": SECRET_PASSWORD}
        )
        assert registered.status_code == 422
        assert client.patch(ME, headers=account.headers, json={"name": name}).status_code == 422

    @pytest.mark.parametrize(
        ("username", "password"),
        [
            ("nul\x00@example.com", SECRET_PASSWORD),
            ("someone@example.com", "nul\x00" + SECRET_PASSWORD),
            ("\x00", "\x00"),
        ],
    )
    def test_nul_bytes_at_login_are_refused_not_crashed(
        self, client: TestClient, account: Account, username: str, password: str
    ) -> None:
        response = client.post(LOGIN, data={"username": username, "password": password})
        assert_client_error(response)

    def test_nul_byte_in_the_real_password_at_login_is_401(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.post(
            LOGIN, data={"username": account.email, "password": account.password + "\x00"}
        )
        assert response.status_code == 401

    @pytest.mark.parametrize("route", [REFRESH, LOGOUT])
    def test_nul_byte_in_a_refresh_token_is_refused(
        self, client: TestClient, account: Account, route: str
    ) -> None:
        response = client.post(route, json={"refresh_token": account.refresh_token + "\x00"})
        assert response.status_code in (204, 401, 422)
        assert_no_leak(response)
        still_valid = client.post(REFRESH, json={"refresh_token": account.refresh_token})
        assert still_valid.status_code == 200


SQL_LOOKING_NAMES = [
    "Robert'); DROP TABLE users;--",
    "' OR '1'='1",
    '" OR 1=1 --',
    "name%' AND 1=1 --",
    "\\'; SELECT pg_sleep(5); --",
    "$1 $$ :name ?",
    "<script>alert(1)</script>",
    "${jndi:ldap://x/a}",
]


@pytest.mark.parametrize("name", SQL_LOOKING_NAMES)
def test_sql_looking_names_are_stored_and_returned_literally(
    client: TestClient, superuser: Account, name: str
) -> None:
    created = client.post(
        REGISTER, json={"name": name, "email": "sql@example.com", "password": SECRET_PASSWORD}
    )
    assert created.status_code == 201
    assert created.json()["name"] == name
    read = client.get(f"{USERS}/{created.json()['id']}", headers=superuser.headers)
    assert read.json()["name"] == name
    renamed = client.patch(ME, headers=superuser.headers, json={"name": name})
    assert renamed.json()["name"] == name
    listed = client.get(USERS, headers=superuser.headers).json()
    assert listed["total"] == 2
    assert sorted(user["name"] for user in listed["items"]) == [name, name]


MALFORMED_BODIES = [
    b"{not json",
    b'{"name": }',
    b'{"name": "A", "email": "a@example.com", "password": "12345678"',
    b'{"name": "A",}',
    b"[]",
    b'"a string"',
    b"null",
    b"123",
    b"\xff\xfe\xfd",
    b"",
    b'{"name": NaN}',
]
JSON_ROUTES = [REGISTER, REFRESH, LOGOUT]


@pytest.mark.parametrize(
    "body",
    [
        {"refresh_token": {"$ne": None}},
        {"refresh_token": ["a", "b"]},
        {"refresh_token": 12345},
        {"refresh_token": "x" * 10_000},
        {"name": {"$gt": ""}, "email": "a@example.com", "password": SECRET_PASSWORD},
    ],
)
def test_operator_injection_and_wrong_types_are_422(
    client: TestClient, body: dict[str, object]
) -> None:
    for route in JSON_ROUTES:
        response = client.post(route, json=body)
        assert response.status_code == 422, (route, response.text)
        assert_no_leak(response, SECRET_PASSWORD)


@pytest.mark.parametrize("body", MALFORMED_BODIES)
def test_malformed_json_is_4xx(client: TestClient, account: Account, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    for route in JSON_ROUTES:
        assert_client_error(client.post(route, content=body, headers=headers))
    for route in (ME, f"{USERS}/{account.id}"):
        assert_client_error(
            client.patch(route, content=body, headers={**headers, **account.headers})
        )


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"name": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b"[" * 100_000,
    ],
    ids=["arrays", "objects", "nested-in-a-field", "unclosed"],
)
def test_deeply_nested_json_is_4xx(client: TestClient, account: Account, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    for route in JSON_ROUTES:
        assert_client_error(client.post(route, content=body, headers=headers))
    assert_client_error(client.patch(ME, content=body, headers={**headers, **account.headers}))


VALID_REGISTRATION = {"name": "A", "email": "ct@example.com", "password": SECRET_PASSWORD}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", json.dumps(VALID_REGISTRATION).encode()),
        ("application/x-www-form-urlencoded", b"name=A&email=ct%40example.com&password=x"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\n\r\n--xyz--\r\n"),
        ("application/xml", b"<user><name>A</name></user>"),
        ("application/json; charset=utf-16", b"{}"),
    ],
)
def test_a_wrong_content_type_for_json_is_4xx(
    client: TestClient, content_type: str, body: bytes
) -> None:
    response = client.post(REGISTER, content=body, headers={"content-type": content_type})
    assert_client_error(response)


def test_json_where_the_login_form_is_expected_is_422(client: TestClient) -> None:
    response = client.post(LOGIN, json={"username": "a@example.com", "password": SECRET_PASSWORD})
    assert response.status_code == 422
    assert_no_leak(response, SECRET_PASSWORD)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": str(10**20)},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"limit": "1e3"},
        {"limit": ""},
        {"offset": "-1"},
        {"offset": str(10**20)},
        {"offset": "NaN"},
        {"offset": "0x10"},
        {"offset": "1; DROP TABLE users"},
    ],
)
def test_bad_paging_parameters_are_422(
    client: TestClient, superuser: Account, params: dict[str, str]
) -> None:
    response = client.get(USERS, params=params, headers=superuser.headers)
    assert response.status_code == 422
    assert_no_leak(response)


def test_a_large_limit_is_capped_not_refused(client: TestClient, superuser: Account) -> None:
    page = client.get(USERS, params={"limit": 100_000}, headers=superuser.headers)
    assert page.status_code == 200
    assert page.json()["limit"] == 100


@pytest.mark.parametrize(
    "user_id", ["not-a-uuid", "1", "' OR 1=1 --", "00000000-0000-0000-0000-00000000000g"]
)
def test_a_malformed_user_id_is_422(client: TestClient, superuser: Account, user_id: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = client.request(
            method, f"{USERS}/{user_id}", headers=superuser.headers, json={"name": "x"}
        )
        assert response.status_code == 422, (method, response.text)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "A", "email": "not-an-email", "password": SECRET_PASSWORD},
        {"name": "", "email": "a@example.com", "password": SECRET_PASSWORD},
        {"name": "A", "email": "a@example.com", "password": SECRET_PASSWORD + "x" * 80},
        {"name": ["A"], "email": "a@example.com", "password": SECRET_PASSWORD},
        {"email": "a@example.com", "password": SECRET_PASSWORD},
    ],
)
def test_a_422_never_echoes_the_password(client: TestClient, body: dict[str, object]) -> None:
    response = client.post(REGISTER, json=body)
    assert response.status_code == 422
    assert_no_leak(response, SECRET_PASSWORD)


def test_a_422_on_password_change_never_echoes_either_password(
    client: TestClient, account: Account
) -> None:
    response = client.post(
        f"{ME}/password",
        headers=account.headers,
        json={"current_password": account.password, "new_password": SECRET_PASSWORD * 5},
    )
    assert response.status_code == 422
    assert_no_leak(response, SECRET_PASSWORD, account.password)


class TestBodyLimitBeforeReading:
    """Driven at the ASGI level, so the test sees exactly what the app reads."""

    def _call(
        self, app: FastAPI, headers: list[tuple[bytes, bytes]], chunks: Callable[[], bytes | None]
    ) -> tuple[int, int]:
        received = 0
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal received
            chunk = chunks()
            if chunk is None:
                return {"type": "http.disconnect"}
            received += 1
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": REGISTER,
            "raw_path": REGISTER.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", b"application/json"),
                *headers,
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }

        async def call() -> None:
            await app(scope, receive, send)

        anyio.run(call)
        return status, received

    def test_declared_length_over_the_limit_is_413_without_reading_the_body(
        self, app: FastAPI
    ) -> None:
        limit = app.state.settings.MAX_BODY_BYTES
        status, received = self._call(
            app, [(b"content-length", str(limit + 1).encode())], lambda: b" " * 65536
        )
        assert status == 413
        assert received == 0

    def test_a_chunked_stream_is_cut_off_soon_after_the_limit(self, app: FastAPI) -> None:
        limit = app.state.settings.MAX_BODY_BYTES
        chunk = 65536
        status, received = self._call(
            app, [(b"transfer-encoding", b"chunked")], lambda: b" " * chunk
        )
        assert status == 413
        # An endless stream, read only until it passed the limit.
        assert received == limit // chunk + 1

    @pytest.mark.parametrize("value", [b"abc", b"-1", b"1e3", b""])
    def test_a_nonsense_content_length_is_400(self, app: FastAPI, value: bytes) -> None:
        status, received = self._call(app, [(b"content-length", value)], lambda: None)
        assert status == 400
        assert received == 0
