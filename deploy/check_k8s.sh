#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (deploy/k8s), run by `make check-deploy` and CI:
#   every overlay renders with `kubectl kustomize`; each rendering passes
#   `kubernetes-validate --strict` (unknown or misspelt fields fail) against the oldest
#   Kubernetes release the manifests support and the newest the validator knows; and it
#   passes checkov's Kubernetes checks, where a skipped check is an annotation in the
#   manifest with its reason.
# The two checkers live in a venv of their own, pinned by deploy/requirements-k8s-tools.txt
# (checkov's dependencies clash with requirements-dev.txt). Their schemas and checks ship in
# the packages: nothing is fetched at check time. .venv may be a symbolic link that clones
# share (scaffold/rename_check.sh), so the venv is made and installed into through its real
# path (the #! lines of pip's scripts name the interpreter pip ran under), and the tools run
# as `python -m`, which needs no script (see tool_venv in the Makefile).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSIONS=(1.30.0 1.37.0)
PYTHON=${PYTHON:-python3}
TOOLS=.venv/k8s-tools
LOCK=deploy/requirements-k8s-tools.txt

if ! command -v kubectl >/dev/null; then
    echo "kubectl is missing: it renders the manifests (kubectl kustomize, no cluster needed)." >&2
    echo "Install kubectl 1.27 or newer (kustomize v5 inside), then run this again." >&2
    exit 1
fi

# Installed again only when the pins change (about 2 minutes; 400 MB, mostly checkov's).
wanted=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [[ ! -x $TOOLS/bin/checkov || "$(cat "$TOOLS/.installed" 2>/dev/null)" != "$wanted" ]]; then
    echo "== installing the pinned Kubernetes checkers into $TOOLS"
    rm -rf "$TOOLS"
    mkdir -p .venv
    real_tools="$(realpath .venv)/k8s-tools"
    "$PYTHON" -m venv "$real_tools"
    "$real_tools/bin/python" -m pip install -q --disable-pip-version-check -r "$LOCK"
    echo "$wanted" >"$TOOLS/.installed"
fi

# No update check, no download of policy metadata: the run is the same with or without a
# network.
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
overlays=(deploy/k8s/overlays/*/)
if [[ ${#overlays[@]} -eq 0 || ! -d ${overlays[0]} ]]; then
    echo "no overlay under deploy/k8s/overlays" >&2
    exit 1
fi
for overlay in "${overlays[@]}"; do
    overlay=${overlay%/}
    name=$(basename "$overlay")
    rendered="$workdir/$name.yaml"
    echo "== kubectl kustomize $overlay"
    kubectl kustomize "$overlay" >"$rendered"
    echo "ok: $(grep -c '^kind: ' "$rendered") objects"
    for version in "${KUBERNETES_VERSIONS[@]}"; do
        echo "== kubernetes-validate --strict, Kubernetes $version ($name)"
        # An object it has no schema for (a kind or API version this release does not
        # serve, autoscaling/v2beta2 say) is only a warning to the validator: a failure here,
        # since every object in these manifests is a built-in kind.
        if ! report=$("$TOOLS/bin/python" -m kubernetes_validate --strict --quiet -k "$version" \
            "$rendered" 2>&1) || grep -q '^WARN' <<<"$report"; then
            echo "$report" >&2
            exit 1
        fi
        echo "ok"
    done
    echo "== checkov --framework kubernetes ($name)"
    # checkov's own entry point silences the SyntaxWarnings of its dependencies' old regexes.
    "$TOOLS/bin/python" -W ignore::SyntaxWarning -m checkov.main --framework kubernetes \
        --file "$rendered" --skip-download --quiet --compact
done
