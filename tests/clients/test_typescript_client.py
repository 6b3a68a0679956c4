"""The generated TypeScript client (clients/typescript) against a live server: its flow
script (flow/flow.ts) registers, logs in, updates, refreshes, logs out, lists users as an
admin and meets the documented errors, run by the machine's Node.js."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import LiveApi
from tests.conftest import ROOT

TS_CLIENT = ROOT / "clients" / "typescript"
TSC = TS_CLIENT / "node_modules" / ".bin" / "tsc"


def require_node_packages() -> str:
    """The path to node; skip without the packages `make client` installs, except in CI,
    where a missing toolchain must fail rather than pass unseen."""
    node = shutil.which("node")
    if node is not None and TSC.exists():
        return node
    reason = (
        "Node.js is not installed"
        if node is None
        else "clients/typescript's packages are not installed: run `make client`"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def compile_flow(out_dir: Path) -> Path:
    # Type-checked apart (`tsc --noEmit` in CI); here it only has to become JavaScript.
    subprocess.run(
        [TSC, "--project", "tsconfig.flow.json", "--noCheck", "--outDir", out_dir],
        cwd=TS_CLIENT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # The compiled files are ES modules, as in the package they come from.
    (out_dir / "package.json").write_text(json.dumps({"type": "module"}))
    return out_dir / "flow" / "flow.js"


def test_the_typescript_client_drives_the_account_flow(live_api: LiveApi, tmp_path: Path) -> None:
    node = require_node_packages()
    flow = compile_flow(tmp_path / "build")

    result = subprocess.run(
        [node, flow],
        env={
            **os.environ,
            "API_URL": live_api.base_url,
            "ADMIN_EMAIL": live_api.admin_email,
            "ADMIN_PASSWORD": live_api.admin_password,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "all steps passed" in result.stdout
