"""Operational HTTP behaviour: health, body limits, error shapes."""

from collections.abc import Iterator

from fastapi import FastAPI
from starlette.testclient import TestClient

from core.config import Settings
from core.http import docs
from main import create_app
from tests.conftest import TEST_SECRET_KEY, make_settings


class TestHealth:
    def test_liveness(self, client: TestClient) -> None:
        assert client.get("/health").json() == {"status": "ok"}

    def test_readiness_checks_the_database(self, client: TestClient) -> None:
        response = client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["database"] == "ok"


class TestBodyLimit:
    def test_declared_oversized_body_is_413(self, client: TestClient, app: FastAPI) -> None:
        limit = app.state.settings.MAX_BODY_BYTES
        response = client.post(
            "/api/v1/auth/register",
            content=b"{" + b" " * limit + b"}",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json() == {"detail": "Request body too large"}

    def test_a_body_of_exactly_the_limit_reaches_the_app(
        self, client: TestClient, app: FastAPI
    ) -> None:
        limit = app.state.settings.MAX_BODY_BYTES
        body = b'{"name": "x", "email": "not-an-email", "password": "long-enough"}'
        padded = body[:-1] + b" " * (limit - len(body)) + b"}"
        assert len(padded) == limit
        declared = client.post(
            "/api/v1/auth/register", content=padded, headers={"content-type": "application/json"}
        )
        # The app read it and judged it (an invalid email): the size itself was fine.
        assert declared.status_code == 422, declared.text
        streamed = client.post(
            "/api/v1/auth/register",
            content=iter([padded[: limit // 2], padded[limit // 2 :]]),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 422, streamed.text
        one_more = client.post(
            "/api/v1/auth/register",
            content=padded + b" ",
            headers={"content-type": "application/json"},
        )
        assert one_more.status_code == 413

    def test_streamed_oversized_body_is_413(self, client: TestClient, app: FastAPI) -> None:
        limit = app.state.settings.MAX_BODY_BYTES

        def chunks() -> Iterator[bytes]:
            for _ in range(limit // 65536 + 2):
                yield b" " * 65536

        response = client.post(
            "/api/v1/auth/register", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413


class TestErrorShapes:
    def test_unexpected_exception_is_a_generic_json_500(self, app: FastAPI) -> None:
        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals: SELECT * FROM users")

        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/boom")
        assert response.status_code == 500
        assert response.json() == {"detail": "Internal server error"}
        assert "SELECT" not in response.text

    def test_malformed_json_is_422_json(self, client: TestClient) -> None:
        response = client.post(
            "/api/v1/auth/register",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422
        assert "detail" in response.json()

    def test_unknown_route_is_404_json(self, client: TestClient) -> None:
        assert client.get("/api/v1/nope").json() == {"detail": "Not Found"}


class TestReadinessWithRedis:
    def test_a_configured_redis_that_is_down_shows_as_degraded_not_unready(
        self, database_url: str
    ) -> None:
        # Port 1 on loopback: nothing listens there, so the connection is refused at once.
        app = create_app(make_settings(database_url, REDIS_URL="redis://127.0.0.1:1/0"))
        with TestClient(app) as client:
            response = client.get("/health/ready")
            liveness = client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "degraded", "database": "ok", "redis": "unavailable"}
        assert liveness.status_code == 200


class TestDocsAndCors:
    def test_docs_are_served_in_production(self, database_url: str) -> None:

        app = create_app(
            make_settings(database_url, ENVIRONMENT="production", SECRET_KEY=TEST_SECRET_KEY)
        )
        with TestClient(app) as client:
            for path in ("/docs", "/redoc", "/openapi.json", "/docs-assets/swagger-ui.css"):
                assert client.get(path).status_code == 200, path

    def test_the_redoc_bundle_points_at_no_cdn(self, client: TestClient) -> None:
        response = client.get(docs.REDOC_BUNDLE_URL)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert docs.REDOC_CDN_LOGO_URL not in response.content
        assert docs.EMPTY_IMAGE_URL in response.content
        assert len(response.content) > 500_000  # the whole bundle, not a stub

    def test_docs_enabled_false_removes_them(self, database_url: str) -> None:

        app = create_app(make_settings(database_url, DOCS_ENABLED=False))
        with TestClient(app) as client:
            for path in ("/docs", "/redoc", "/openapi.json"):
                assert client.get(path).status_code == 404, path
            assert client.get("/health").status_code == 200

    def test_cors_allows_only_the_configured_origins(self, database_url: str) -> None:

        app = create_app(make_settings(database_url, CORS_ORIGINS=["https://app.example"]))
        preflight = {"Access-Control-Request-Method": "GET"}
        with TestClient(app) as client:
            allowed = client.options(
                "/api/v1/users/me", headers={"Origin": "https://app.example", **preflight}
            )
            refused = client.options(
                "/api/v1/users/me", headers={"Origin": "https://evil.example", **preflight}
            )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in refused.headers

    def test_cors_exposes_the_configured_headers(self, database_url: str) -> None:
        app = create_app(
            make_settings(
                database_url,
                CORS_ORIGINS=["https://app.example"],
                CORS_EXPOSE_HEADERS=["ETag", "X-Custom"],
            )
        )
        with TestClient(app) as client:
            response = client.get("/api/v1/users/me", headers={"Origin": "https://app.example"})
        assert response.headers["access-control-expose-headers"] == "ETag, X-Custom"

    def test_every_documented_response_header_is_exposed_by_default(self, app: FastAPI) -> None:
        """A header declared on any response in the OpenAPI document, or added to every
        response by middleware, is one a web app needs to read."""
        declared = {
            name.lower()
            for operations in app.openapi()["paths"].values()
            for operation in operations.values()
            for response in operation["responses"].values()
            for name in response.get("headers", {})
        }
        added_by_middleware = {"etag", "x-request-id"}
        exposed = {name.lower() for name in Settings.model_fields["CORS_EXPOSE_HEADERS"].default}
        assert {"retry-after", "www-authenticate"} <= declared
        assert declared | added_by_middleware <= exposed
