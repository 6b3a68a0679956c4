"""Conditional GETs: a deterministic strong ETag on every successful API read, 304 for a
client that holds the current one, and headers that keep authenticated JSON out of shared
caches."""

import enum
from datetime import date
from typing import Annotated

import pytest
from fastapi import FastAPI, Query
from pydantic import BaseModel
from starlette.testclient import TestClient

from core.cache import Cache
from core.config import Settings
from core.http.caching import cached, etag_of
from core.http.deps import SettingsDep
from main import create_app
from tests.conftest import Account

ME = "/api/v1/users/me"


class TestConditionalGet:
    def test_an_api_read_carries_a_strong_etag_of_its_body_and_private_headers(
        self, client: TestClient, account: Account
    ) -> None:
        response = client.get(ME, headers=account.headers)
        assert response.headers["etag"] == etag_of(response.content)
        assert not response.headers["etag"].startswith("W/")
        assert response.headers["cache-control"] == "private, no-cache"
        assert "public" not in response.headers["cache-control"]
        assert "Authorization" in response.headers["vary"]

    def test_the_same_body_gets_the_same_etag_from_another_app_instance(
        self, client: TestClient, app: FastAPI, account: Account
    ) -> None:
        first = client.get(ME, headers=account.headers)
        # A second app built from the same settings stands in for another worker, instance,
        # or the same one after a restart: the tag depends on the body only.
        other = create_app(app.state.settings)
        other.state.database = app.state.database
        other.state.cache = app.state.cache
        with TestClient(other) as second_client:
            second = second_client.get(ME, headers=account.headers)
        assert second.content == first.content
        assert second.headers["etag"] == first.headers["etag"]

    @pytest.mark.parametrize(
        "if_none_match",
        ["{etag}", "W/{etag}", '"something-else", {etag}', "*"],
        ids=["exact", "weak-form", "in-a-list", "star"],
    )
    def test_a_current_etag_gets_304_with_no_body(
        self, client: TestClient, account: Account, if_none_match: str
    ) -> None:
        etag = client.get(ME, headers=account.headers).headers["etag"]
        response = client.get(
            ME, headers={**account.headers, "If-None-Match": if_none_match.format(etag=etag)}
        )
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "private, no-cache"
        assert "content-type" not in response.headers

    def test_a_stale_etag_gets_the_new_representation(
        self, client: TestClient, account: Account
    ) -> None:
        old = client.get(ME, headers=account.headers).headers["etag"]
        client.patch(ME, headers=account.headers, json={"name": "Renamed"})
        response = client.get(ME, headers={**account.headers, "If-None-Match": old})
        assert response.status_code == 200
        assert response.json()["name"] == "Renamed"
        assert response.headers["etag"] != old

    def test_errors_writes_and_probes_get_no_etag(
        self, client: TestClient, account: Account
    ) -> None:
        unauthenticated = client.get(ME)
        assert unauthenticated.status_code == 401
        assert "etag" not in unauthenticated.headers
        # An error is never kept, not even by the browser's own cache.
        assert unauthenticated.headers["cache-control"] == "no-store"
        missing = client.get("/api/v1/no-such-route", headers=account.headers)
        assert missing.status_code == 404
        assert missing.headers["cache-control"] == "no-store"
        patched = client.patch(ME, headers=account.headers, json={"name": "Renamed"})
        assert patched.status_code == 200
        assert "etag" not in patched.headers
        assert "etag" not in client.get("/health").headers


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Echo(BaseModel):
    value: str


class TestCachedKeys:
    """`@cached` keys a response by every parameter the route is called with, whatever its
    type: two requests that get different answers never share an entry."""

    @pytest.fixture
    def echo(self, settings: Settings) -> TestClient:
        app = FastAPI()
        app.state.settings = settings
        app.state.cache = Cache("", secret=settings.SECRET_KEY)

        @app.get("/by-date")
        @cached(lambda: ["echo"])
        async def by_date(since: date, _settings: SettingsDep) -> Echo:
            return Echo(value=since.isoformat())

        @app.get("/by-list")
        @cached(lambda: ["echo"])
        async def by_list(ids: Annotated[list[int], Query()]) -> Echo:
            return Echo(value=",".join(map(str, ids)))

        @app.get("/by-enum")
        @cached(lambda: ["echo"])
        async def by_enum(colour: Colour) -> Echo:
            return Echo(value=colour.value)

        return TestClient(app)

    @pytest.mark.parametrize(
        ("path", "first", "second"),
        [
            ("/by-date", {"since": "2026-01-01"}, {"since": "2026-01-02"}),
            ("/by-list", {"ids": ["1", "2"]}, {"ids": ["3"]}),
            ("/by-enum", {"colour": "red"}, {"colour": "blue"}),
        ],
    )
    def test_different_parameters_get_their_own_answers(
        self,
        echo: TestClient,
        path: str,
        first: dict[str, str | list[str]],
        second: dict[str, str | list[str]],
    ) -> None:
        with echo:
            answers = [echo.get(path, params=params).json()["value"] for params in (first, second)]
            again = echo.get(path, params=first).json()["value"]
        assert answers[0] != answers[1]
        assert again == answers[0]
