"""clients/ matches the routes as they are: `make client` regenerates it and CI fails on any
difference; these checks say so sooner, with neither Node.js nor the generators."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from clients.export_openapi import openapi_document, openapi_text
from tests.conftest import ROOT

CLIENTS = ROOT / "clients"
STALE = "the routes changed since clients/ was generated: run `make client` and commit clients/"


def test_the_committed_openapi_document_is_the_apps() -> None:
    committed = (CLIENTS / "openapi.json").read_text(encoding="utf-8")
    assert committed == openapi_text(openapi_document()), STALE


def test_every_machine_writes_the_same_document(tmp_path: Path) -> None:
    """Another hash seed (set and dict orders) and another environment, the same bytes."""
    written = []
    settings = {"PROJECT_NAME": "Somebody's API", "DOCS_ENABLED": "false"}
    for seed, overrides in (("1", settings), ("2", {})):
        target = tmp_path / f"openapi-{seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": seed, **overrides}
        subprocess.run(
            [sys.executable, "-m", "clients.export_openapi", target],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        written.append(target.read_bytes())
    assert written[0] == written[1] == (CLIENTS / "openapi.json").read_bytes(), STALE


def test_every_operation_is_a_function_in_both_clients() -> None:
    document = json.loads((CLIENTS / "openapi.json").read_text(encoding="utf-8"))
    typescript_sdk = (CLIENTS / "typescript" / "src" / "client" / "sdk.gen.ts").read_text()
    python_api = CLIENTS / "python" / "fastapi_accounts_client" / "api"
    for item in document["paths"].values():
        for operation in item.values():
            words = re.split(r"[^a-zA-Z0-9]+", operation["operationId"])
            # auth-login: authLogin() in TypeScript, api/auth/auth_login.py in Python.
            function = words[0] + "".join(word.capitalize() for word in words[1:])
            assert f"export const {function} = " in typescript_sdk, (function, STALE)
            tag = "_".join(re.split(r"[^a-zA-Z0-9]+", operation["tags"][0]))
            module = python_api / tag / f"{'_'.join(words)}.py"
            assert module.is_file(), (module, STALE)
