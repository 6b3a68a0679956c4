"""deploy/nginx.conf, run by a real nginx in front of the app: /metrics is not served to the
internet, in any spelling of its path, while the app itself still serves it to Prometheus;
responses carry one request id.

Needs nginx (Debian's package; .ci/run installs it). The config is used as written, except
for what only exists inside compose: the upstream's DNS name and port 80.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx2
import pytest

from tests.conftest import ROOT
from tests.support import LiveServer, free_port, fresh_database, migrate, run_server

NGINX = shutil.which("nginx")
pytestmark = pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx)")

UPSTREAM = "server web:8000 resolve;"
LISTEN = "listen 80;"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("app")
    with fresh_database(directory) as database_url:
        migrate(database_url)
        with run_server(database_url, directory) as server:
            yield server


@pytest.fixture(scope="module")
def load_balancer(
    tmp_path_factory: pytest.TempPathFactory, app_server: LiveServer
) -> Iterator[str]:
    assert NGINX is not None
    directory = tmp_path_factory.mktemp("nginx")
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    assert UPSTREAM in config
    assert LISTEN in config
    port = free_port()
    app_address = app_server.base_url.removeprefix("http://")
    config = config.replace(UPSTREAM, f"server {app_address};").replace(
        LISTEN, f"listen 127.0.0.1:{port};"
    )
    config_path = directory / "nginx.conf"
    config_path.write_text(config)
    process = subprocess.Popen(
        [NGINX, "-c", str(config_path), "-g", f"daemon off; pid {directory / 'nginx.pid'};"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "error.log").open("wb"),
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx2.get(f"{base_url}/health", timeout=1)
                break
            except httpx2.HTTPError:
                if process.poll() is not None:
                    pytest.fail((directory / "error.log").read_text())
                time.sleep(0.05)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


def raw_get(base_url: str, target: str) -> httpx2.Response:
    """GET with the request target sent exactly as written (no client-side normalising)."""
    with httpx2.Client(base_url=base_url, timeout=5) as client:
        request = client.build_request("GET", "/")
        request.url = request.url.copy_with(raw_path=target.encode())
        return client.send(request)


@pytest.mark.parametrize(
    "target", ["/metrics", "/metrics/", "/metrics?format=text", "//metrics", "/%6detrics"]
)
def test_the_load_balancer_refuses_metrics(load_balancer: str, target: str) -> None:
    response = raw_get(load_balancer, target)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert "# TYPE" not in response.text


def test_the_load_balancer_still_serves_the_api(load_balancer: str) -> None:
    response = httpx2.get(f"{load_balancer}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("sent", [{"X-Request-ID": "client-id-1"}, {}])
def test_the_request_id_reaches_the_client_once(load_balancer: str, sent: dict[str, str]) -> None:
    # Both nginx and the app set it; twice, a browser would read "id, id".
    response = httpx2.get(f"{load_balancer}/api/v1/users/me", headers=sent, timeout=5)
    [request_id] = response.headers.get_list("x-request-id")
    assert request_id == sent.get("X-Request-ID", request_id)


def test_prometheus_still_scrapes_the_app_directly(app_server: LiveServer) -> None:
    response = httpx2.get(f"{app_server.base_url}/metrics", timeout=5)
    assert response.status_code == 200
    assert "# TYPE http_requests_total counter" in response.text
