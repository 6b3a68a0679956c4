"""Security headers on every response (core/http/security_headers.py) and the docs pages' own
policy (core/http/docs.py). tests/docs/test_docs_browser.py checks what a real browser does with
them."""

import base64
import hashlib
import re

import httpx2
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from core.http.security_headers import DEFAULT_CONTENT_SECURITY_POLICY


def assert_never_framed_sniffed_or_referred(headers: httpx2.Headers) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    [policy] = headers.get_list("content-security-policy")
    assert "frame-ancestors 'none'" in policy


class TestEveryResponse:
    @pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/nope", "/health"])
    def test_json_gets_the_headers_and_a_policy_that_allows_nothing(
        self, client: TestClient, path: str
    ) -> None:
        response = client.get(path)

        assert_never_framed_sniffed_or_referred(response.headers)
        assert response.headers["content-security-policy"] == DEFAULT_CONTENT_SECURITY_POLICY

    def test_a_413_answered_before_the_app_gets_them_too(
        self, client: TestClient, app: FastAPI
    ) -> None:
        response = client.post(
            "/api/v1/auth/register",
            content=b" " * (app.state.settings.MAX_BODY_BYTES + 1),
            headers={"content-type": "application/json"},
        )

        assert response.status_code == 413
        assert_never_framed_sniffed_or_referred(response.headers)


class TestDocsPages:
    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    def test_each_page_has_its_own_policy_and_no_other(self, client: TestClient, path: str) -> None:
        response = client.get(path)

        assert response.headers["content-type"].startswith("text/html")
        assert_never_framed_sniffed_or_referred(response.headers)
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        assert "unsafe-eval" not in policy

    @pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect"])
    def test_the_policy_allows_exactly_the_pages_own_inline_scripts(
        self, client: TestClient, path: str
    ) -> None:
        response = client.get(path)

        inline_scripts = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
        assert inline_scripts
        script_src = re.search(r"script-src ([^;]*)", response.headers["content-security-policy"])
        assert script_src is not None
        assert script_src.group(1).split() == [
            "'self'",
            *(
                f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
                for script in inline_scripts
            ),
        ]

    def test_swagger_ui_is_not_told_to_keep_the_authorization(self, client: TestClient) -> None:
        assert "persistAuthorization" not in client.get("/docs").text
