#!/usr/bin/env bash
# "Make it yours" (docs/make-it-yours.md), as a team runs it on a fresh clone: `make rename`, then lint,
# type-check, the whole suite (SQLite), `make client` (no diff) and `make check-deploy`; and
# afterwards no file outside .git names the old project, in any spelling, in its text or its
# name (LICENSE's copyright notice aside: the MIT licence asks every copy to keep it).
# It runs in a clone of the current commit, under a name nothing in the project uses, with
# none of the app's settings from the caller's environment (so it can only reach the clone's
# own SQLite file).
#
#     bash scaffold/rename_check.sh      # from the project root, after `make install`
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

# The new name and title, and the old name as a pattern of its own: its words joined by at
# most one separator, in any case (read from pyproject.toml, not from the rename's own code).
{
    read -r name
    read -r title
    read -r old_pattern
} < <(.venv/bin/python - <<'PY'
import tomllib
from pathlib import Path

from scaffold.rename import unused_name

name = unused_name(Path.cwd())
words = name.split("-")
print(name)
print(" ".join([*(word.capitalize() for word in words[:-1]), words[-1].upper()]))
old = tomllib.loads(Path("pyproject.toml").read_text())["project"]["name"]
print("[-_.[:space:]]*".join(old.split("-")))
PY
)
test -n "$name" && test -n "$old_pattern" || { echo "rename check: no trial name" >&2; exit 1; }
settings="$(.venv/bin/python -c 'from core.config import Settings; print(*Settings.model_fields)')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$ROOT" "$work/project"
# The clone shares this checkout's virtualenv: the same pins, so pip finds nothing to install.
ln -s "$ROOT/.venv" "$work/project/.venv"
cd "$work/project"
# shellcheck disable=SC2086  # one word per setting name
unset $settings TEST_DATABASE_URL TEST_REDIS_URL

make rename name="$name" title="$title"
# .venv (the shared virtualenv's link) is ignored by .gitignore, so --all leaves it out.
git add --all -- .
git -c user.name="rename check" -c user.email=rename-check@example.com commit -q -m "rename"

make lint
make typecheck
make test
make client
if [ -n "$(git status --porcelain -- clients/)" ]; then
    git status --short -- clients/ >&2
    echo "rename check: make client changed clients/ after make rename" >&2
    exit 1
fi
make check-deploy

# grep -r follows no symbolic link: the shared virtualenv is not searched.
if grep -rIn -i -E "$old_pattern" --exclude-dir=.git . | grep -v '^\./LICENSE:'; then
    echo "rename check: the files above still name the old project" >&2
    exit 1
fi
if find . -path ./.git -prune -o -regextype posix-extended -iregex ".*$old_pattern.*" -print \
    | grep .; then
    echo "rename check: the paths above still name the old project" >&2
    exit 1
fi
echo "rename check: 'make rename name=$name' leaves lint, types, the suite, the clients and" \
    "the deployment checks green, and no file names the old project"
