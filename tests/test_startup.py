"""main.py builds the app with the garbage collector off, then freezes what it built. Each case
imports main in a fresh interpreter, the way a worker does."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.support import server_env

REPORT_COLLECTOR = """
import gc
try:
    import main
    outcome = "built"
except Exception as error:
    outcome = type(error).__name__
print(outcome, gc.isenabled(), gc.get_freeze_count())
"""


def import_main(tmp_path: Path, **settings: str) -> tuple[str, bool, int]:
    env = server_env(f"sqlite:///{tmp_path / 'app.db'}", **settings)
    result = subprocess.run(
        [sys.executable, "-c", REPORT_COLLECTOR],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    outcome, enabled, frozen = result.stdout.split()[-3:]
    return outcome, enabled == "True", int(frozen)


def test_the_built_app_is_frozen_and_the_collector_is_back_on(tmp_path: Path) -> None:
    outcome, enabled, frozen = import_main(tmp_path)
    assert (outcome, enabled) == ("built", True)
    # Modules, models and routes: tens of thousands of objects no collection walks again.
    assert frozen > 50_000


def test_a_refused_build_still_gives_the_collector_back(tmp_path: Path) -> None:
    outcome, enabled, _ = import_main(tmp_path, ENVIRONMENT="production", SECRET_KEY="changethis")
    assert outcome == "ValidationError"
    assert enabled
