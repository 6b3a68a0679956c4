"""`make rename`: the name is checked before anything is written; then every spelling of the
current name, in every file and file name, becomes the same spelling of the new one.

The renames run on a copy of the project's files (what git sees, plus a `.env`), so a file any
team adds that names the project is covered: if the rename misses it, a test says where.
scaffold/rename_check.sh (CI) runs lint, types, the suite, the clients and the deployment
checks on a renamed clone.
"""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaffold.rename import Name, Refused, current_name, plan, rename, respell, unused_name
from tests.conftest import ROOT

OLD = current_name(ROOT)
NEW_NAME = unused_name(ROOT)
# The title casing an acronym, as a team would: the title's words keep the casing given.
NEW_TITLE = " ".join(
    [*(word.capitalize() for word in NEW_NAME.split("-")[:-1]), NEW_NAME.split("-")[-1].upper()]
)
NEW = Name.parse(NEW_NAME, NEW_TITLE)
SUBPROCESS_TIMEOUT_SECONDS = 60


def trace_pattern(name: Name) -> re.Pattern[str]:
    """Any mention of the name, more loosely than the rename matches it: the words in any case,
    joined by nothing, one separator or any white space, inside longer words too."""
    return re.compile(r"(?:[-_.]|\s*)".join(map(re.escape, name.words)), re.IGNORECASE)


def project_files(root: Path = ROOT) -> list[Path]:
    """What git sees in the checkout: tracked files and new ones it does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        check=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
    ).stdout.decode()
    paths = [Path(path) for path in listed.split("\0") if path]
    return sorted(
        path for path in paths if (root / path).is_file() and not (root / path).is_symlink()
    )


def copy_project(target: Path) -> None:
    for path in project_files():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target / path)  # copy2: `make` sees the same timestamps
    # A developer's .env (ignored by git) names the project too.
    shutil.copy2(ROOT / ".env.example", target / ".env")


def snapshot(root: Path) -> dict[Path, str]:
    return {
        path.relative_to(root): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts
    }


def traces(root: Path, name: Name) -> list[str]:
    """Every mention of `name` in the files under `root` and in their paths, LICENSE aside."""
    pattern = trace_pattern(name)
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if pattern.search(str(relative)):
            found.append(f"{relative} (path)")
        if path.is_file() and relative != Path("LICENSE"):
            text = path.read_bytes().decode("utf-8", errors="replace")
            found.extend(
                f"{relative}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()!r}"
                for match in pattern.finditer(text)
            )
    return found


@dataclass
class Renamed:
    root: Path
    before: dict[Path, str]
    output: str


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> Renamed:
    """The project copied, then renamed by the command `make rename` runs."""
    root = tmp_path_factory.mktemp("renamed")
    copy_project(root)
    before = snapshot(root)
    result = subprocess.run(
        [sys.executable, "-m", "scaffold.rename", NEW.slug, "--title", NEW.title],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr
    return Renamed(root, before, result.stdout)


# --- after a rename ------------------------------------------------------------------------------


def test_no_file_names_the_old_project(renamed: Renamed) -> None:
    found = traces(renamed.root, OLD)
    assert not found, (
        f"still naming {OLD.slug!r} after the rename (scaffold/rename.py must learn this "
        "spelling, or the file must spell the name as the rest of the project does):\n"
        + "\n".join(found)
    )


def test_licence_keeps_its_copyright_notice(renamed: Renamed) -> None:
    assert (renamed.root / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


def test_the_project_is_identified_by_the_new_name(renamed: Renamed) -> None:
    root, slug, title = renamed.root, NEW.slug, NEW.title
    package = "_".join(NEW.words) + "_client"

    def load(path: str) -> Any:
        text = (root / path).read_text()
        if path.endswith(".json"):
            return json.loads(text)
        return tomllib.loads(text) if path.endswith(".toml") else yaml.safe_load(text)

    assert load("pyproject.toml")["project"]["name"] == slug
    assert load("deploy/k8s/base/namespace.yaml")["metadata"]["name"] == slug
    base = load("deploy/k8s/base/kustomization.yaml")
    assert base["namespace"] == slug
    assert base["labels"][0]["pairs"] == {"app.kubernetes.io/part-of": slug}
    assert base["images"][0]["name"] == slug
    assert load("deploy/k8s/overlays/dev/kustomization.yaml")["namespace"] == f"{slug}-dev"
    assert load("deploy/k8s/overlays/prod/kustomization.yaml")["images"][0] == {
        "name": slug,
        "newName": f"registry.example.com/{slug}",
        "newTag": "0.1.0",
    }
    assert load("compose.yml")["name"] == slug
    dashboard = load(f"deploy/grafana/dashboards/{slug}.json")
    assert (dashboard["uid"], dashboard["title"]) == (slug, title)
    assert load("clients/openapi.json")["info"]["title"] == title
    assert load("clients/typescript/package.json")["name"] == f"{slug}-client"
    lock = load("clients/typescript/package-lock.json")
    assert lock["name"] == lock["packages"][""]["name"] == f"{slug}-client"
    assert load("clients/python/pyproject.toml")["project"]["name"] == f"{slug}-client"
    assert load("clients/python-client.yaml")["package_name_override"] == package
    assert (root / "clients" / "python" / package / "__init__.py").is_file()
    assert (root / "README.md").read_text().startswith(f"# {title}\n")
    assert f'PROJECT_NAME="{title}"' in (root / ".env").read_text()


def test_files_that_do_not_name_the_project_are_untouched(renamed: Renamed) -> None:
    """Only spellings of the name change: `FastAPI`, `accounts` or anything else stay."""
    pattern = trace_pattern(OLD)
    after = snapshot(renamed.root)
    unchanged = [
        path
        for path in renamed.before
        if path != Path(".env")  # made by the test, from .env.example
        and not pattern.search(str(path))
        and not pattern.search((ROOT / path).read_bytes().decode("utf-8", errors="replace"))
    ]
    assert unchanged, "the copy is empty"
    assert [path for path in unchanged if after.get(path) != renamed.before[path]] == []
    assert len(after) == len(renamed.before), "files appeared or vanished"


def test_the_renamed_openapi_document_is_the_one_the_renamed_app_publishes(
    renamed: Renamed, tmp_path: Path
) -> None:
    """The clients are generated from it: equal, `make client` finds the rename complete."""
    exported = tmp_path / "openapi.json"
    subprocess.run(
        [sys.executable, "-m", "clients.export_openapi", str(exported)],
        cwd=renamed.root,
        check=True,
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
    )
    assert exported.read_bytes() == (renamed.root / "clients" / "openapi.json").read_bytes()


def test_the_command_lists_what_it_changed(renamed: Renamed) -> None:
    assert f"renamed {OLD.slug} to {NEW.slug}" in renamed.output
    assert "  rewrote pyproject.toml" in renamed.output
    snake = "_".join(NEW.words)
    assert f"-> clients/python/{snake}_client" in renamed.output


def test_a_second_rename_leaves_no_trace_of_the_first(tmp_path: Path) -> None:
    copy_project(tmp_path)
    rename(NEW.slug, NEW.title, root=tmp_path)
    again = "-".join(["again", "renamed"])
    rename(again, root=tmp_path)
    assert current_name(tmp_path).slug == again
    assert traces(tmp_path, OLD) == []
    assert traces(tmp_path, NEW) == []


# --- names refused, and nothing changed ----------------------------------------------------------


NOT_A_NAME = "is not a project name"
USED = "is already used in the project"
# Each with the reason it must be refused for: these names appear in this file, so "already
# used" would refuse any of them and hide a check that no longer works.
REFUSED_NAMES = [
    ("", NOT_A_NAME),
    ("Bad", NOT_A_NAME),
    ("BAD", NOT_A_NAME),
    ("bad_name", NOT_A_NAME),
    ("bad name", NOT_A_NAME),
    ("bad.name", NOT_A_NAME),
    ("-bad", NOT_A_NAME),
    ("bad-", NOT_A_NAME),
    ("bad--name", NOT_A_NAME),
    ("1bad", NOT_A_NAME),
    ("bád", NOT_A_NAME),
    ("bad/../name", NOT_A_NAME),
    ("bad\n", NOT_A_NAME),
    ("a" * 41, "longer than 40 characters"),  # the Grafana dashboard's uid takes 40
    ("default", "Kubernetes keeps"),
    ("kube-system", "Kubernetes keeps"),
    (OLD.slug, "is already the project's name"),
    (f"{OLD.slug}-v2", "holds the current name"),
    (f"my-{OLD.slug}", "holds the current name"),
    ("users", USED),  # not the project's name alone
    ("web", USED),
    ("fastapi", USED),
    ("readme", USED),
]


@pytest.mark.parametrize(("name", "reason"), REFUSED_NAMES)
def test_a_refused_name_changes_nothing(name: str, reason: str) -> None:
    with pytest.raises(Refused, match=re.escape(reason)):
        plan(name, None, ROOT)  # every check; plan() writes nothing


@pytest.mark.parametrize(
    "title",
    [
        "Something Else",  # other words: a title is the name's words, cased
        NEW.title.replace(" ", "  "),
        NEW.title.replace(" ", "-"),
        NEW.title + " ",
        f'{NEW.title}"',
        NEW.title + "\nX",
        NEW.title.lower().replace(" ", " Extra ", 1),
    ],
)
def test_a_title_other_than_the_names_words_is_refused(title: str) -> None:
    with pytest.raises(Refused, match="title"):
        plan(NEW.slug, title, ROOT)


def test_make_rename_refuses_a_bad_name_and_changes_nothing(tmp_path: Path) -> None:
    copy_project(tmp_path)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    before = snapshot(tmp_path)
    for arguments, expected in (
        ([], "usage: make rename name="),
        (["name=Not A Name"], "refused: 'Not A Name' is not a project name"),
        (["name=users"], "refused: 'users' is already used in the project"),
        ([f"name={NEW.slug}", "title=Another Title"], "refused: title 'Another Title'"),
    ):
        result = subprocess.run(
            ["make", "--no-print-directory", "rename", *arguments],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_SECONDS,
        )
        assert result.returncode != 0, result.stdout
        assert expected in result.stdout + result.stderr
    assert snapshot(tmp_path) == before


# --- spellings -----------------------------------------------------------------------------------

SPELLING_OLD = Name.parse("alpha-beta")
SPELLING_NEW = Name.parse("north-wind-api", "North Wind API")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpha-beta", "north-wind-api"),
        ("image: alpha-beta:latest", "image: north-wind-api:latest"),
        ("alpha_beta_client", "north_wind_api_client"),
        ("ALPHA_BETA", "NORTH_WIND_API"),
        ("Alpha Beta", "North Wind API"),
        ("AlphaBeta", "NorthWindAPI"),
        ("ALPHA beta", "NORTH wind api"),
        ("alphaBeta", "northWindAPI"),
        ("alphaBetaClient", "northWindAPIClient"),
        ("myAlphaBeta", "myNorthWindAPI"),
        ("alpha.beta.localtest.me", "north.wind.api.localtest.me"),
        ("alphabeta", "northwindapi"),
        ("alpha beta", "north wind api"),
        ("the Alpha\n  Beta docs", "the North\n  Wind API docs"),
        ("/run/alpha-beta-metrics-1", "/run/north-wind-api-metrics-1"),
        # Inside a longer word: another word, left alone.
        ("xalpha-beta", "xalpha-beta"),
        ("alpha-beta2", "alpha-beta2"),
        ("alpha-betas", "alpha-betas"),
        ("alpha_beta-x", "north_wind_api-x"),
        # Mixed separators are not one spelling of the name.
        ("alpha-_beta", "alpha-_beta"),
        ("alpha", "alpha"),
    ],
)
def test_each_spelling_becomes_the_same_spelling_of_the_new_name(text: str, expected: str) -> None:
    assert respell(text, SPELLING_OLD, SPELLING_NEW) == expected


def test_a_title_is_each_word_capitalised_unless_given() -> None:
    assert Name.parse("north-wind-api").title == "North Wind Api"
    assert respell("Alpha Beta", SPELLING_OLD, Name.parse("north-wind-api")) == "North Wind Api"


# --- the licence ---------------------------------------------------------------------------------


def test_the_project_is_mit_licensed_and_says_so() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge" in licence
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (project["license"], project["license-files"]) == ("MIT", ["LICENSE"])
    assert "\n## Licence\n\nMIT (`LICENSE`)" in (ROOT / "README.md").read_text()
    # The image ships the code, so it ships the licence.
    assert re.search(r"^COPY LICENSE ", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_the_project_version_is_the_apis() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    document = json.loads((ROOT / "clients" / "openapi.json").read_text())
    assert project["version"] == document["info"]["version"]
