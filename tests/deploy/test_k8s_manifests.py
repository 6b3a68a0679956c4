"""The Kubernetes manifests (deploy/k8s), rendered per overlay with `kubectl kustomize` as a
deploy would, checked for what schema validation and checkov cannot see: selectors that must
agree, timings that must nest, probes on the right paths, which pod may talk to which, and
no secret in the repository. `make check-deploy` runs the validators themselves."""

import re
import runpy
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import yaml

from core.config import Settings
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
APP_COMPONENTS = ("web", "worker", "migrate")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
# Settings that are credentials: only ever files from the Secret, never in a ConfigMap (an
# environment variable would also win over the file).
SECRET_SETTINGS = frozenset(
    {
        "SECRET_KEY",
        "DATABASE_URL",
        "DATABASE_DIRECT_URL",
        "DATABASE_READ_URL",
        "REDIS_URL",
        "SMTP_PASSWORD",
        "FIRST_SUPERUSER_EMAIL",
        "FIRST_SUPERUSER_PASSWORD",
    }
)
# The worker finishes or releases its job within this many seconds of SIGTERM.
WORKER_SHUTDOWN_SECONDS = 30
POSTGRES_PORT, REDIS_PORT = 5432, 6379
SMTP_PORTS = frozenset({25, 465, 587, 1025})

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed: it renders the manifests (kubectl kustomize)",
)

Object = dict[str, Any]


@cache
def render(overlay: str) -> tuple[Object, ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(item for item in yaml.safe_load_all(result.stdout) if item)


@dataclass(frozen=True)
class Manifests:
    overlay: str
    objects: tuple[Object, ...]

    def of_kind(self, kind: str) -> list[Object]:
        return [item for item in self.objects if item["kind"] == kind]

    def get(self, kind: str, name: str) -> Object:
        found = [item for item in self.of_kind(kind) if item["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[Object]:
        return [item for item in self.objects if item["kind"] in WORKLOAD_KINDS]

    def app_workload(self, component: str) -> Object:
        found = [
            item
            for item in self.workloads()
            if pod_labels(item).get("app.kubernetes.io/name") == "fastapi-accounts"
            and pod_labels(item).get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"{self.overlay}: expected one {component} workload"
        return found[0]


@pytest.fixture(params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> Manifests:
    return Manifests(request.param, render(request.param))


def pod_spec(workload: Object) -> Object:
    spec: Object = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Object) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(workload: Object) -> Iterator[Object]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def selects(selector: Object, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def container_port(container: Object, port: int | str) -> int:
    """The number a probe, Service or policy port means in this container, by name or number."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"container {container['name']} declares no port {port!r}")


def gunicorn_graceful_timeout() -> int:
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    timeout: int = config["graceful_timeout"]
    return timeout


# --- selectors ---------------------------------------------------------------------------


def test_every_workload_selects_its_own_pods(manifests: Manifests) -> None:
    for workload in manifests.workloads():
        if workload["kind"] == "Job":
            continue  # a Job's selector is generated
        assert selects(workload["spec"]["selector"], pod_labels(workload)), workload["metadata"]


def test_disruption_budget_selector_equals_the_web_deployment_selector(
    manifests: Manifests,
) -> None:
    web = manifests.get("Deployment", "web")
    budget = manifests.get("PodDisruptionBudget", "web")

    assert budget["spec"]["selector"] == web["spec"]["selector"]
    assert selects(budget["spec"]["selector"], pod_labels(web))
    others = [item for item in manifests.workloads() if item is not web]
    assert not any(selects(budget["spec"]["selector"], pod_labels(item)) for item in others)


def test_every_service_port_reaches_a_container_port_of_its_pods(manifests: Manifests) -> None:
    for service in manifests.of_kind("Service"):
        backends = [
            item
            for item in manifests.workloads()
            if item["kind"] != "Job"
            and selects({"matchLabels": service["spec"]["selector"]}, pod_labels(item))
        ]
        assert len(backends) == 1, f"Service {service['metadata']['name']}: {len(backends)}"
        for port in service["spec"]["ports"]:
            served = [
                container
                for container in pod_spec(backends[0])["containers"]
                if any(
                    port["targetPort"] in (declared["containerPort"], declared.get("name"))
                    for declared in container.get("ports", [])
                )
            ]
            assert served, f"Service {service['metadata']['name']} targets {port['targetPort']}"


def test_autoscaler_owns_the_web_replica_count(manifests: Manifests) -> None:
    autoscaler = manifests.get("HorizontalPodAutoscaler", "web")
    web = manifests.get("Deployment", "web")

    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
    }
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    # A `replicas` in the Deployment would reset the autoscaler's count on every apply.
    assert "replicas" not in web["spec"]
    # Rolling out never lowers capacity.
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


# --- probes and shutdown -----------------------------------------------------------------


def test_web_probes_liveness_without_the_database_and_readiness_with_it(
    manifests: Manifests,
) -> None:
    (web,) = pod_spec(manifests.get("Deployment", "web"))["containers"]
    probes = {
        kind: web[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }

    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["startupProbe"]["path"] == "/health"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    for probe in probes.values():
        assert container_port(web, probe["port"]) == 8000


def test_web_pods_outlive_the_prestop_pause_plus_gunicorn_graceful_timeout(
    manifests: Manifests,
) -> None:
    spec = pod_spec(manifests.get("Deployment", "web"))
    (web,) = spec["containers"]
    command = web["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    pause = int(command[1])

    assert pause >= 5, "the endpoints need a few seconds to drop the pod"
    assert spec["terminationGracePeriodSeconds"] > pause + gunicorn_graceful_timeout()


def test_worker_is_given_time_to_finish_or_release_its_job(manifests: Manifests) -> None:
    worker = manifests.app_workload("worker")
    (container,) = pod_spec(worker)["containers"]

    assert container["command"] == ["python", "manage.py", "worker"]
    # Its one port serves its job metrics; no Service sends it traffic.
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > WORKER_SHUTDOWN_SECONDS


def effective_setting(manifests: Manifests, container: Object, name: str) -> int:
    """A numeric setting as the container sees it: its env, else its ConfigMap, else the
    default in core/config.py."""
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    if name in env:
        return int(env[name])
    config_map = manifests.get("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    if name in config_map.get("data", {}):
        return int(config_map["data"][name])
    default: int = Settings.model_fields[name].default
    return default


def test_worker_pool_holds_every_job_plus_the_queue_checks(manifests: Manifests) -> None:
    """Jobs, the stalled-job check and the queue stats share the worker's pool: smaller than
    JOBS_CONCURRENCY + 2 and a job at full concurrency waits out pool_timeout."""
    (container,) = pod_spec(manifests.app_workload("worker"))["containers"]
    pool = effective_setting(manifests, container, "DATABASE_POOL_SIZE") + effective_setting(
        manifests, container, "DATABASE_MAX_OVERFLOW"
    )
    assert pool >= effective_setting(manifests, container, "JOBS_CONCURRENCY") + 2


def test_migration_job_migrates_then_creates_the_superuser_from_the_release_image(
    manifests: Manifests,
) -> None:
    job = manifests.app_workload("migrate")
    (container,) = pod_spec(job)["containers"]
    images = {
        c["image"]
        for component in APP_COMPONENTS
        for c in containers(manifests.app_workload(component))
    }

    assert container["command"][-1] == "python manage.py migrate && python manage.py superuser"
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert len(images) == 1, f"one release, one image: {images}"


# --- settings and secrets ----------------------------------------------------------------


def test_app_containers_read_settings_and_secret_files_the_app_knows(manifests: Manifests) -> None:
    config_maps = {item["metadata"]["name"] for item in manifests.of_kind("ConfigMap")}
    secrets = {item["metadata"]["name"] for item in manifests.of_kind("Secret")}
    fields = set(Settings.model_fields)
    for component in APP_COMPONENTS:
        workload = manifests.app_workload(component)
        volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
        for container in containers(workload):
            (source,) = container["envFrom"]
            assert source["configMapRef"]["name"] in config_maps
            env = {item["name"]: item for item in container.get("env", [])}
            mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
            mount = mounts[env["SECRETS_DIR"]["value"]]
            assert mount["readOnly"] is True
            secret = volumes[mount["name"]]["secret"]
            # Prod creates app-secrets out of band; an overlay that generates one renames it.
            assert secret["secretName"] in (secrets or {"app-secrets"})
            paths = {item["path"]: item["key"] for item in secret["items"]}
            assert set(paths) <= fields, f"{component}: files the app never reads"
            assert {"SECRET_KEY", "DATABASE_URL"} <= set(paths)
            # LISTEN/NOTIFY and the migration's lock need a session of their own: only web
            # may go through a transaction pooler.
            expected = "DATABASE_URL" if component == "web" else "DATABASE_DIRECT_URL"
            assert paths["DATABASE_URL"] == expected, component


def test_writable_tmp_for_every_app_container_on_a_read_only_root(manifests: Manifests) -> None:
    for component in APP_COMPONENTS:
        workload = manifests.app_workload(component)
        volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
        for container in containers(workload):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108
            assert "emptyDir" in volumes[tmp["name"]], component


def test_no_config_map_or_env_literal_holds_a_secret(manifests: Manifests) -> None:
    for config_map in manifests.of_kind("ConfigMap"):
        assert not SECRET_SETTINGS & set(config_map.get("data", {})), config_map["metadata"]
    for workload in manifests.workloads():
        for container in containers(workload):
            for item in container.get("env", []):
                assert not (item["name"] in SECRET_SETTINGS and "value" in item), item


def test_base_and_prod_hold_no_secret_value() -> None:
    assert "prod" in OVERLAYS
    assert not Manifests("prod", render("prod")).of_kind("Secret")
    credential = re.compile(
        r"://[^/\s:@]+:[^@\s]+@"  # a URL with a password
        r"|(?<![a-z])(?:PASSWORD|SECRET_KEY|TOKEN)\s*[=:]\s*\S"  # an assignment with a value
        r"|kind:\s*Secret\b",
        re.IGNORECASE,
    )
    sources = [*(K8S / "base").rglob("*"), *(K8S / "overlays" / "prod").rglob("*")]
    files = [path for path in sources if path.is_file()]
    assert files
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not credential.search(line), f"{path.relative_to(ROOT)}:{number}: {line}"


# --- network policies --------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """What the NetworkPolicies of one rendering allow for the pods of one workload."""

    ingress_rules: list[Object]
    egress_rules: list[Object]
    isolated_both_ways: bool

    def egress_ports(self) -> set[int]:
        return {port["port"] for rule in self.egress_rules for port in rule.get("ports", [])}


def reach(manifests: Manifests, workload: Object) -> Reach:
    labels = pod_labels(workload)
    ingress: list[Object] = []
    egress: list[Object] = []
    types: set[str] = set()
    for policy in manifests.of_kind("NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        types |= set(policy["spec"]["policyTypes"])
        ingress += policy["spec"].get("ingress", [])
        egress += policy["spec"].get("egress", [])
    return Reach(ingress, egress, {"Ingress", "Egress"} <= types)


def test_every_pod_is_isolated_and_every_rule_names_its_peers_and_ports(
    manifests: Manifests,
) -> None:
    for workload in manifests.workloads():
        allowed = reach(manifests, workload)
        assert allowed.isolated_both_ways, workload["metadata"]["name"]
        for rule in allowed.ingress_rules:
            assert rule.get("from"), rule
            assert rule.get("ports"), rule
        for rule in allowed.egress_rules:
            assert rule.get("to"), rule
            assert rule.get("ports"), rule


def test_only_the_ingress_controller_and_prometheus_reach_the_web_pods(
    manifests: Manifests,
) -> None:
    web = manifests.get("Deployment", "web")
    (container,) = pod_spec(web)["containers"]
    annotations = web["spec"]["template"]["metadata"]["annotations"]
    sources: dict[str, set[int]] = {}
    for rule in reach(manifests, web).ingress_rules:
        for peer in rule["from"]:
            name = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            assert "namespaceSelector" in peer, "a peer in another namespace: name it"
            sources.setdefault(name, set()).update(port["port"] for port in rule["ports"])

    assert sources == {"ingress-nginx": {8000}, "prometheus": {8000}}
    assert container_port(container, 8000) == 8000
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == 8000
    assert annotations["prometheus.io/path"] == "/metrics"


def test_each_app_process_reaches_only_the_data_stores_it_uses(manifests: Manifests) -> None:
    web, worker, migrate = (reach(manifests, manifests.app_workload(c)) for c in APP_COMPONENTS)

    for allowed in (web, worker, migrate):
        assert POSTGRES_PORT in allowed.egress_ports()
        assert 53 in allowed.egress_ports()
    assert REDIS_PORT in web.egress_ports()
    assert REDIS_PORT not in worker.egress_ports() | migrate.egress_ports()
    assert SMTP_PORTS & worker.egress_ports()
    assert not SMTP_PORTS & (web.egress_ports() | migrate.egress_ports())


def test_in_cluster_data_stores_admit_only_the_app_pods_that_use_them(
    manifests: Manifests,
) -> None:
    stores = {"postgres": set(APP_COMPONENTS), "redis": {"web"}}
    app = {c: pod_labels(manifests.app_workload(c)) for c in APP_COMPONENTS}
    others = [w for w in manifests.workloads() if w["kind"] != "Job"]
    for store, users in stores.items():
        found = [w for w in others if pod_labels(w).get("app.kubernetes.io/name") == store]
        if not found:
            continue  # a managed service outside the cluster
        admitted = {
            component
            for rule in reach(manifests, found[0]).ingress_rules
            for peer in rule["from"]
            for component, labels in app.items()
            if "namespaceSelector" not in peer and selects(peer["podSelector"], labels)
        }
        assert admitted == users, store


# --- ingress -----------------------------------------------------------------------------


def routed(ingress: Object, path: str) -> bool:
    for rule in ingress["spec"]["rules"]:
        for route in rule["http"]["paths"]:
            prefix = route["path"].rstrip("/")
            if route["pathType"] == "Exact" and path == route["path"]:
                return True
            if route["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix + "/")):
                return True
    return False


def test_ingress_routes_the_api_and_docs_to_web_and_never_metrics(manifests: Manifests) -> None:
    ingress = manifests.get("Ingress", "web")
    service = manifests.get("Service", "web")
    service_ports = {port["name"] for port in service["spec"]["ports"]}

    for path in ("/api/v1/users/me", "/health", "/health/ready", "/docs", "/redoc"):
        assert routed(ingress, path), path
    assert routed(ingress, "/openapi.json")
    for path in ("/metrics", "/metrics/", "/api-internal", "/"):
        assert not routed(ingress, path), path
    for rule in ingress["spec"]["rules"]:
        for route in rule["http"]["paths"]:
            assert route["backend"]["service"]["name"] == "web"
            assert route["backend"]["service"]["port"]["name"] in service_ports


# --- checkov ------------------------------------------------------------------------------


def test_every_skipped_check_names_one_check_and_gives_its_reason(manifests: Manifests) -> None:
    skips = 0
    for item in manifests.objects:
        for key, value in (item["metadata"].get("annotations") or {}).items():
            if "checkov.io/skip" not in key:
                continue
            skips += 1
            # checkov splits the value on "=": a second one would crash its parser.
            check, _, reason = value.partition("=")
            assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
            assert "=" not in reason, value
            assert len(reason.split()) >= 8, value
    assert skips, "no skip found: the annotations' format changed?"


# --- the deploy order the docs give (docs/deploy/kubernetes.md) -----------------------------


def matches_selector(selector: str, labels: dict[str, str]) -> bool:
    """The `key notin (a,b)` and `key in (a,b)` label queries the deploy docs use."""
    parsed = re.fullmatch(r"\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*", selector)
    assert parsed, f"selector form not understood here: {selector}"
    key, operator, values = parsed.group(1), parsed.group(2), parsed.group(3)
    inside = labels.get(key) in {value.strip() for value in values.split(",")}
    return inside if operator == "in" else not inside


def test_the_docs_first_apply_brings_the_migration_job_and_what_it_needs_but_no_app_pods() -> None:
    page = (ROOT / "docs" / "deploy" / "kubernetes.md").read_text()
    (selector,) = re.findall(r"kubectl apply -k deploy/k8s/overlays/prod -l '([^']+)'", page)
    objects = render("prod")
    first = [
        item for item in objects if matches_selector(selector, item["metadata"].get("labels", {}))
    ]
    kinds = {(item["kind"], item["metadata"]["name"]) for item in first}

    job = Manifests("prod", objects).get("Job", "migrate")
    (container,) = pod_spec(job)["containers"]
    (settings,) = container["envFrom"]
    assert ("Job", "migrate") in kinds
    assert ("ConfigMap", settings["configMapRef"]["name"]) in kinds
    assert ("ServiceAccount", pod_spec(job)["serviceAccountName"]) in kinds
    # Without its egress policies the Job could not resolve or reach the database.
    assert {("NetworkPolicy", "app-dns-egress"), ("NetworkPolicy", "app-database-egress")} <= kinds
    assert not [item for item in first if item["kind"] in ("Deployment", "StatefulSet")]
