"""A web app on another origin, in a real browser, using the API as docs/clients.md tells client
teams to: sign in, read, write, refresh, and read the headers it documents (ETag,
X-Request-ID, WWW-Authenticate, Retry-After). A browser hides every response header a CORS
response does not expose, whatever the server sent.

The app runs under uvicorn (tests/support.py) with CORS_ORIGINS naming the page's origin; the
page is served by a second local server on another port (tests/chromium.py), and its script
reports what it could read. Skipped when Chromium or Playwright is missing.
"""

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.chromium import Browser, Page, launched_chromium, serving_pages
from tests.conftest import DEFAULT_PASSWORD
from tests.support import LiveServer, fresh_database, migrate, run_server

NEW_NAME = "Renamed Across Origins"
MAX_BODY_BYTES = 2048
# What the page's script reads from every response: the headers docs/clients.md documents.
WEB_APP = """<!doctype html>
<title>A web app on another origin</title>
<script>
const DOCUMENTED_HEADERS = ["ETag", "X-Request-ID", "WWW-Authenticate", "Retry-After"];

async function call(api, path, init = {}) {
  const response = await fetch(api + path, init);
  const text = await response.text();
  const headers = {};
  for (const name of DOCUMENTED_HEADERS) headers[name] = response.headers.get(name);
  return { status: response.status, headers, body: text ? JSON.parse(text) : null };
}

function signIn(api, email, password) {
  const form = new URLSearchParams({ username: email, password });
  return call(api, "/api/v1/auth/login", { method: "POST", body: form });
}

const bearer = (token) => ({ Authorization: `Bearer ${token}` });
const json = (token, body) => ({
  headers: { ...bearer(token), "Content-Type": "application/json" },
  body: JSON.stringify(body),
});

async function useTheApi(api, email, password, newName, oversizedName) {
  const login = await signIn(api, email, password);
  const first = login.body.access_token;
  const me = await call(api, "/api/v1/users/me", { headers: bearer(first) });
  const write = await call(api, "/api/v1/users/me", {
    method: "PATCH", ...json(first, { name: newName }),
  });
  const refresh = await call(api, "/api/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: login.body.refresh_token }),
  });
  const second = refresh.body.access_token;
  const meAgain = await call(api, "/api/v1/users/me", { headers: bearer(second) });
  const unchanged = await call(api, "/api/v1/users/me", {
    headers: { ...bearer(second), "If-None-Match": meAgain.headers.ETag },
  });
  const unauthorized = await call(api, "/api/v1/users/me", { headers: bearer("not-a-token") });
  const limited = await signIn(api, email, password);
  const tooLarge = await call(api, "/api/v1/users/me", {
    method: "PATCH", ...json(second, { name: oversizedName }),
  });
  return { login, me, write, refresh, meAgain, unchanged, unauthorized, limited, tooLarge };
}

async function canReach(api) {
  try {
    await fetch(api + "/health");
    return true;
  } catch {
    return false;
  }
}
</script>
"""
GENERATED_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
STRONG_ETAG = re.compile(r'"[0-9a-f]{32}"')


@pytest.fixture(scope="module")
def pages_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("web-app")
    (directory / "index.html").write_text(WEB_APP)
    with serving_pages(directory) as origin:
        yield origin


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pages_origin: str) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("cors-api")
    with fresh_database(directory) as database_url:
        migrate(database_url)
        with run_server(
            database_url,
            directory,
            CORS_ORIGINS=pages_origin,
            # One sign-in a minute per account and address: the page's second one is a 429.
            LOGIN_RATE_LIMIT="1/minute",
            MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        ) as server:
            yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


def register(api: LiveServer) -> str:
    email = f"web-{uuid.uuid4().hex[:12]}@example.com"
    response = httpx2.post(
        f"{api.base_url}/api/v1/auth/register",
        json={"name": "Web User", "email": email, "password": DEFAULT_PASSWORD},
        timeout=10.0,
    )
    assert response.status_code == 201, response.text
    return email


def test_a_page_on_an_allowed_origin_reads_every_documented_header(
    api: LiveServer, pages_origin: str, page: Page
) -> None:
    email = register(api)
    page.goto(f"{pages_origin}/index.html")

    report: dict[str, Any] = page.evaluate(
        "([api, email, password, newName, oversizedName]) =>"
        " useTheApi(api, email, password, newName, oversizedName)",
        [api.base_url, email, DEFAULT_PASSWORD, NEW_NAME, "x" * MAX_BODY_BYTES],
    )

    login, refresh = report["login"], report["refresh"]
    assert login["status"] == 200, login
    assert refresh["status"] == 200, refresh
    assert refresh["body"]["refresh_token"] != login["body"]["refresh_token"]

    me, write, me_again = report["me"], report["write"], report["meAgain"]
    assert (me["status"], me["body"]["email"]) == (200, email)
    assert (write["status"], write["body"]["name"]) == (200, NEW_NAME)
    assert (me_again["status"], me_again["body"]["name"]) == (200, NEW_NAME)
    for response in (me, me_again):
        assert STRONG_ETAG.fullmatch(response["headers"]["ETag"] or ""), response
    assert me_again["headers"]["ETag"] != me["headers"]["ETag"]  # the write changed the account
    request_ids = [report[step]["headers"]["X-Request-ID"] for step in report]
    assert all(GENERATED_REQUEST_ID.fullmatch(id or "") for id in request_ids), request_ids
    assert len(set(request_ids)) == len(request_ids)

    unchanged = report["unchanged"]
    assert unchanged["status"] == 304, unchanged
    assert unchanged["headers"]["ETag"] == me_again["headers"]["ETag"]

    unauthorized = report["unauthorized"]
    assert unauthorized["status"] == 401, unauthorized
    assert unauthorized["headers"]["WWW-Authenticate"] == "Bearer"

    limited = report["limited"]
    assert limited["status"] == 429, limited
    retry_after = limited["headers"]["Retry-After"] or ""
    assert retry_after.isdigit(), limited
    assert 1 <= int(retry_after) <= 60

    too_large = report["tooLarge"]
    assert too_large["status"] == 413, too_large
    assert too_large["body"] == {"detail": "Request body too large"}


def test_a_page_on_another_origin_reads_nothing(
    api: LiveServer, pages_origin: str, page: Page
) -> None:
    # Same page, same server, but 127.0.0.1 instead of localhost: an origin CORS_ORIGINS
    # does not name.
    unlisted_origin = pages_origin.replace("localhost", "127.0.0.1")
    page.goto(f"{unlisted_origin}/index.html")

    assert page.evaluate("(api) => canReach(api)", api.base_url) is False
    page.goto(f"{pages_origin}/index.html")
    assert page.evaluate("(api) => canReach(api)", api.base_url) is True
