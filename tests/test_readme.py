"""The README stays a two-minute read, and every link in it leads somewhere.

The documentation site checks its own links (`make docs-build` builds it strictly, in CI); the
README is outside the site, so its links into docs/ are checked here.
"""

import re
import unicodedata
from pathlib import Path

from tests.conftest import ROOT

README = ROOT / "README.md"
# About two minutes of reading; the rest belongs in a page of docs/.
MAX_LINES = 150
INLINE_LINK = re.compile(r"\]\(([^)\s]+)\)")
REFERENCE_LINK = re.compile(r"^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """A heading's anchor as the site makes it (Python-Markdown's toc, which MkDocs uses)."""
    text = heading.replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(match) for match in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def local_links(text: str) -> list[str]:
    """Links into the repository: not to another site, not inside a code block."""
    text = FENCE.sub("", text)
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [target for target in targets if not re.match(r"[a-z]+:", target)]


def test_the_readme_is_a_two_minute_read() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"README.md has {lines} lines: keep it to {MAX_LINES} and move the detail to a page "
        "of docs/ (listed in mkdocs.yml's nav)"
    )


def test_every_link_in_the_readme_leads_to_a_file_and_a_heading_of_it() -> None:
    links = local_links(README.read_text())
    assert links, "no link into docs/: the README should lead a reader into the site"
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (README.parent / path).resolve() if path else README
        if not target.is_file():
            broken.append(f"{link}: no such file")
        elif anchor and anchor not in anchors(target):
            broken.append(f"{link}: no heading with that anchor in {path or 'README.md'}")
    assert broken == []


def test_links_are_read_from_the_text_as_a_reader_sees_it() -> None:
    text = (
        "[a](docs/a.md) [b](https://example.com) [c](#c)\n"
        "```\n[d](docs/in-a-code-block.md)\n```\n"
        "[e]: docs/e.md\n"
    )
    assert local_links(text) == ["docs/a.md", "#c", "docs/e.md"]
    assert slug("The shape of a `feature`") == "the-shape-of-a-feature"
    assert slug("core/") == "core"
    assert slug("On PostgreSQL: a durable queue") == "on-postgresql-a-durable-queue"
