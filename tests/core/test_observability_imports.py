"""What a worker imports for metrics and tracing: only what is switched on. Each case imports
main in a fresh interpreter, as a worker does, and lists the modules it loaded."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.support import server_env

LIST_MODULES = """
import json, sys
import main
print(json.dumps(sorted(sys.modules)))
"""

# What tracing brings. (redis-py, which the cache's library imports, loads the SDK's metrics
# part by itself when the SDK is installed: that is not tracing, and costs about 2 MiB.)
TRACING_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
)


def modules_after_import(tmp_path: Path, **settings: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", LIST_MODULES],
        cwd=ROOT,
        env=server_env(f"sqlite:///{tmp_path / 'app.db'}", **settings),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return modules


def test_by_default_metrics_load_and_tracing_does_not(tmp_path: Path) -> None:
    modules = modules_after_import(tmp_path)
    assert "prometheus_client" in modules
    assert not [m for m in modules if m.startswith(TRACING_MODULES)]


def test_metrics_off_loads_no_metrics_library(tmp_path: Path) -> None:
    modules = modules_after_import(tmp_path, METRICS_ENABLED="false")
    assert not [m for m in modules if m.startswith("prometheus_client")]


def test_an_otlp_endpoint_loads_the_tracing_sdk(tmp_path: Path) -> None:
    modules = modules_after_import(
        tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9/", METRICS_ENABLED="false"
    )
    assert "opentelemetry.sdk.trace" in modules
    assert "opentelemetry.instrumentation.sqlalchemy" in modules
    # Without REDIS_URL there is no Redis to trace.
    assert "opentelemetry.instrumentation.redis" not in modules
