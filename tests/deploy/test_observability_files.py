"""The observability files compose runs, checked without Docker (`make check-deploy` runs this
file): Prometheus's scrape configuration, Grafana's provisioning, and the dashboard, whose
every query must parse as PromQL and name only series and labels the app really exports.

What the app exports is read from a live scrape of the app, not from a list kept here.
"""

import json
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from core.observability import metrics
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fastapi-accounts.json"
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"job", "instance"}
# Grafana's variables, replaced by what Grafana would put there.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> Any:
    return load_yaml(ROOT / "compose.yml")


@pytest.fixture
def exported(client: TestClient) -> dict[str, set[str]]:
    """Every series name the app exports, with its label names."""

    async def queue() -> metrics.JobQueueStats:
        return metrics.JobQueueStats({"queued": 1}, oldest_waiting_age_seconds=1.0)

    # One of everything, so that families with labels have a series to show their labels.
    client.get("/health")
    metrics.record_rate_limit_rejection("login")
    metrics.record_cache("current_user", "hit")
    metrics.record_job("send_mail", "succeeded", seconds=0.1)
    metrics.watch_job_queue(queue)
    try:
        text = client.get("/metrics").text
    finally:
        metrics.watch_job_queue(None)
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


class TestDashboard:
    def test_every_query_parses_and_uses_exported_series_and_labels(
        self, exported: dict[str, set[str]]
    ) -> None:
        queries = dashboard_queries()
        assert len(queries) >= 20
        for title, expr in queries:
            problems = query_problems(promql_parser.parse(as_promql(expr)), exported)
            assert not problems, f"{title}: {expr}: {problems}"

    def test_every_app_family_has_a_panel(self, exported: dict[str, set[str]]) -> None:
        used = set()
        for _, expr in dashboard_queries():
            used |= selector_names(promql_parser.parse(as_promql(expr)))
        families = {name.removesuffix("_total") for name in exported if name.startswith("app_")}
        for suffix in ("_bucket", "_count", "_sum"):
            families = {name.removesuffix(suffix) for name in families}
        unused = {f for f in families if not any(name.startswith(f) for name in used)}
        assert not unused

    def test_every_query_selects_jobs_prometheus_scrapes(self) -> None:
        """`job` is the scrape job of deploy/prometheus/prometheus.yml: a name it does not
        have selects nothing, and no series exists outside a job."""
        config = load_yaml(DEPLOY / "prometheus/prometheus.yml")
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        for title, expr in dashboard_queries():
            for selector in selectors(promql_parser.parse(as_promql(expr))):
                (job,) = [m for m in selector.matchers.matchers if m.name == "job"]
                if job.op == promql_parser.MatchOp.Equal:
                    named = {job.value}
                else:
                    assert job.op == promql_parser.MatchOp.Re, f"{title}: {expr}"
                    named = set(job.value.split("|"))
                assert named <= jobs, f"{title}: no scrape job {sorted(named - jobs)}"

    def test_panels_fit_the_grid_and_use_the_provisioned_data_source(self) -> None:
        dashboard = json.loads(DASHBOARD.read_text())
        datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
        prometheus = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        cells: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            covered = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not covered & cells, f"{panel['title']} overlaps another panel"
            cells |= covered
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == prometheus["uid"], panel["title"]
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] == prometheus["uid"], panel["title"]


def selectors(expr: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(expr, visit)
    return found


def selector_names(expr: Any) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(expr, visit)
    return names


def query_problems(expr: Any, exported: dict[str, set[str]]) -> list[str]:
    problems: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name not in exported:
                problems.append(f"the app exports no series {node.name}")
                return True
            for matcher in node.matchers.matchers:
                if matcher.name not in exported[node.name] | TARGET_LABELS:
                    problems.append(f"{node.name} has no label {matcher.name}")
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            available = set(TARGET_LABELS)
            for name in selector_names(node.expr):
                available |= exported.get(name, set())
            missing = set(node.modifier.labels) - available
            if missing:
                problems.append(f"grouping by labels no series has: {sorted(missing)}")
        return True

    promql_parser.walk(expr, visit)
    return problems


class TestPrometheus:
    def test_it_scrapes_every_web_replica_directly(self) -> None:
        config = load_yaml(DEPLOY / "prometheus/prometheus.yml")
        assert set(config) <= {"global", "scrape_configs", "rule_files", "alerting"}
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        web = jobs["web"]
        assert set(web) <= {"job_name", "metrics_path", "dns_sd_configs", "scrape_interval"}
        assert web["metrics_path"] == "/metrics"
        # Docker's DNS answers the service name with one A record per replica.
        (discovery,) = web["dns_sd_configs"]
        assert discovery["names"] == ["web"]
        assert discovery["type"] == "A"
        # The replicas' port, as the load balancer reaches them.
        assert f"server web:{discovery['port']} resolve;" in (DEPLOY / "nginx.conf").read_text()

    def test_compose_mounts_the_config_it_names(self, compose: Any) -> None:
        prometheus = compose["services"]["prometheus"]
        mounts = dict(volume.rsplit(":", 2)[:2] for volume in prometheus["volumes"])
        config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
        config_path = config_flag.removeprefix("--config.file=")
        assert mounts["./deploy/prometheus/prometheus.yml"] == config_path
        assert (ROOT / "deploy/prometheus/prometheus.yml").is_file()


class TestGrafana:
    def test_the_dashboards_provider_reads_where_compose_mounts_them(self, compose: Any) -> None:
        grafana = compose["services"]["grafana"]
        mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
        provisioning = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")
        (provider,) = provisioning["providers"]
        assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
        assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
        home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        assert home == f"{provider['options']['path']}/{DASHBOARD.name}"

    def test_data_sources_point_at_the_compose_services(self, compose: Any) -> None:
        datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
        for source in datasources["datasources"]:
            host = source["url"].removeprefix("http://").split(":")[0]
            assert host in compose["services"], source["name"]


def test_the_observability_services_are_optional(compose: Any) -> None:
    for name in ("prometheus", "grafana", "jaeger"):
        assert compose["services"][name]["profiles"] == ["observability"]
        for port in compose["services"][name].get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
    assert "profiles" not in compose["services"]["web"]
