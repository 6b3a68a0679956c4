"""A real browser for tests: Debian's Chromium driven by Playwright, and a static web server
for pages that play a web app on an origin of its own.

Importing this module skips the importing test module when Chromium (/usr/bin/chromium,
Debian's `chromium` package) or the `playwright` package is missing, so `make test` still runs
on a machine without a browser; CI has both. Test modules take Playwright's names from here,
so that the skip comes before any import that would fail.
"""

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install it with `apt-get install chromium` to run browser tests",
        allow_module_level=True,
    )
try:
    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Page,
        Route,
        expect,
        sync_playwright,
    )
except ImportError:
    pytest.skip(
        "playwright not installed: `pip install -r requirements-dev.txt` to run browser tests",
        allow_module_level=True,
    )

__all__ = [
    "CHROMIUM_ARGS",
    "Browser",
    "ConsoleMessage",
    "Page",
    "Route",
    "expect",
    "launched_chromium",
    "serving_pages",
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@contextmanager
def launched_chromium(extra_args: tuple[str, ...] = ()) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Not on stderr: a test's output is for its failures."""


@contextmanager
def serving_pages(directory: Path) -> Iterator[str]:
    """The files in `directory` over HTTP on http://localhost:<free port>, an origin other
    than the app's (http://127.0.0.1:<its port>); yields that origin."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
