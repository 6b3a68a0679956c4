import json
import logging

import pytest
from starlette.testclient import TestClient

from core.logging import JsonFormatter


class TestRequestId:
    def test_a_sane_incoming_id_is_echoed(self, client: TestClient) -> None:
        response = client.get("/api/v1/users/me", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    def test_a_missing_id_is_generated(self, client: TestClient) -> None:
        first = client.get("/api/v1/users/me").headers["x-request-id"]
        second = client.get("/api/v1/users/me").headers["x-request-id"]
        assert len(first) == 32
        assert first != second

    def test_a_probe_without_an_id_gets_none_and_one_with_an_id_gets_it_back(
        self, client: TestClient
    ) -> None:
        assert "x-request-id" not in client.get("/health").headers
        assert client.get("/health", headers={"X-Request-ID": "lb-1"}).headers["x-request-id"] == (
            "lb-1"
        )

    def test_an_unsafe_id_is_replaced(self, client: TestClient) -> None:
        response = client.get("/api/v1/users/me", headers={"X-Request-ID": "evil\tid" + "x" * 200})
        assert response.headers["x-request-id"] != "evil\tid" + "x" * 200
        assert len(response.headers["x-request-id"]) == 32


class TestRequestLog:
    def test_one_line_per_request_with_its_id(
        self, client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="app.request")
        client.get("/api/v1/users/me", headers={"X-Request-ID": "trace-me"})
        lines = [r for r in caplog.records if r.name == "app.request"]
        assert len(lines) == 1
        record = lines[0]
        assert record.__dict__["request_id"] == "trace-me"
        assert record.__dict__["status"] == 401
        assert record.__dict__["path"] == "/api/v1/users/me"

    def test_json_lines_carry_the_request_fields(self) -> None:
        record = logging.makeLogRecord(
            {"name": "app.request", "msg": "GET / 200", "request_id": "r1", "status": 200}
        )
        entry = json.loads(JsonFormatter().format(record))
        assert entry["message"] == "GET / 200"
        assert (entry["request_id"], entry["status"]) == ("r1", 200)
