#!/usr/bin/env bash
# "Add a feature" (docs/add-a-feature.md), as a team runs it on a fresh clone: `make feature`, `make
# migration`, `make migrate`, then `make lint` and the whole suite (SQLite). It must end green
# whatever features the project already has, so it runs in a clone of the current commit,
# under a feature name nobody has taken, with none of the app's settings from the caller's
# environment (so it can only reach the clone's own SQLite file).
#
#     bash scaffold/walkthrough.sh      # from the project root, after `make install`
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

name="$(.venv/bin/python - <<'PY'
from pathlib import Path

from scaffold import Refused, check_name

for candidate in ("widgets", *(f"widget{number}s" for number in range(2, 100))):
    try:
        check_name(candidate, Path.cwd())
    except Refused:
        continue
    print(candidate)
    break
PY
)"
test -n "$name" || { echo "walkthrough: every candidate feature name is taken" >&2; exit 1; }
settings="$(.venv/bin/python -c 'from core.config import Settings; print(*Settings.model_fields)')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$ROOT" "$work/project"
# The clone shares this checkout's virtualenv: the same pins, so pip finds nothing to install.
ln -s "$ROOT/.venv" "$work/project/.venv"
cd "$work/project"
# shellcheck disable=SC2086  # one word per setting name
unset $settings TEST_DATABASE_URL TEST_REDIS_URL

make feature name="$name"
make migration m="add $name"
make migrate
make lint
make test
echo "walkthrough: 'make feature name=$name', its migration, lint and the whole suite are green"
