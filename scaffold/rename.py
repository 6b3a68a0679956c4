"""Give the project its own name: `make rename name=<project-name> [title="<Title>"]`.

    python -m scaffold.rename <project-name> [--title "<Title>"]

The current name is `[project] name` in pyproject.toml. Every spelling of it, in every text
file of the project and in file and folder names, becomes the same spelling of the new name:
with dashes (packages, Kubernetes, compose, Grafana), with underscores (the Python client's
package), as a title (the docs, the README), in camelCase, PascalCase or upper case. Only
`LICENSE` is left as it is: the MIT licence asks every copy to keep its copyright notice.

Every check runs before the first file is written, so a refused name leaves the tree
untouched. The new name must be one nothing in the project uses yet, so that afterwards
every spelling of it is the project's name and nothing else (and a later rename is as safe).
"""

import argparse
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scaffold import EXIT_REFUSED

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = Path("pyproject.toml")

# Lower-case words of letters and digits joined by single dashes, starting with a letter.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# The Grafana dashboard's uid is the name, and Grafana takes 40 characters at most; the
# Kubernetes names made from it (`<name>-dev`) stay under their 63.
NAME_MAX_LENGTH = 40
# The title is the name's words, each in the casing the title wants, separated by spaces.
TITLE_PATTERN = re.compile(r"^[A-Za-z0-9]+( [A-Za-z0-9]+)*$")
# Kubernetes keeps the namespace `default` and every `kube-` one for itself.
RESERVED_NAMES = frozenset({"default"})
RESERVED_PREFIXES = ("kube-",)

# Left as it is: the template's copyright notice stays in every copy (the MIT licence's one
# condition).
KEPT = frozenset({Path("LICENSE")})
# Never the project's own text: version control, installed packages, caches.
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".import_linter_cache",
        ".hypothesis",
    }
)
# How many places a refusal quotes.
SHOWN = 3


class Refused(Exception):
    """The name cannot become the project's; the message says why."""


@dataclass(frozen=True)
class Name:
    """A project name: its words, and how the title writes each of them."""

    words: tuple[str, ...]  # lower case, as in the name: ("users", "api")
    title_words: tuple[str, ...]  # as in the title: ("Users", "API")

    @classmethod
    def parse(cls, name: str, title: str | None = None) -> "Name":
        words = tuple(name.split("-"))
        titled = tuple(title.split(" ")) if title else tuple(w.capitalize() for w in words)
        return cls(words, titled)

    @property
    def slug(self) -> str:
        return "-".join(self.words)

    @property
    def title(self) -> str:
        return " ".join(self.title_words)

    def pattern(self) -> re.Pattern[str]:
        """Every spelling: the words in any case, joined by the same separator each time (a
        dash, an underscore, a dot, a space, a line break, or nothing)."""
        escaped = [re.escape(word) for word in self.words]
        source = escaped[0]
        if len(escaped) > 1:
            source += r"(?P<sep>[-_. ]|[ \t]*\r?\n[ \t]*|)" + escaped[1]
            source += "".join(f"(?P=sep){word}" for word in escaped[2:])
        return re.compile(source, re.IGNORECASE)


def _casing(word: str) -> str:
    if word == word.lower():
        return "lower"
    if word == word.upper():
        return "upper"
    return "title"


def _glued(text: str, start: int, end: int) -> bool:
    """True when the match is part of a longer word: `xname`, `name2`. A camelCase
    neighbour is not glued: `myName`, `nameClient`."""
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    glued_before = before.isalnum() and not (before.islower() and text[start].isupper())
    glued_after = after.isalnum() and not (after.isupper() and not text[end - 1].isupper())
    return glued_before or glued_after


def respell(text: str, old: Name, new: Name) -> str:
    """`text` with every spelling of `old` written the same way with `new`'s words: the same
    separator, and each word in the casing of the old word in its place (the last old word's
    casing for any further new word)."""

    def spell(match: re.Match[str]) -> str:
        if _glued(text, match.start(), match.end()):
            return match.group()
        separator = match.groupdict().get("sep") or ""
        written, position = [], 0
        for word in old.words:
            written.append(match.group()[position : position + len(word)])
            position += len(word) + len(separator)
        casings = [_casing(word) for word in written]
        spelled = []
        for index, (word, titled) in enumerate(zip(new.words, new.title_words, strict=True)):
            casing = casings[min(index, len(casings) - 1)]
            spelled.append({"lower": word, "upper": word.upper(), "title": titled}[casing])
        # A title broken over two lines keeps its line break once.
        later = " " if "\n" in separator else separator
        return spelled[0] + "".join(
            (separator if index == 1 else later) + word
            for index, word in enumerate(spelled[1:], start=1)
        )

    return old.pattern().sub(spell, text)


def spellings(text: str, name: Name) -> Iterator[tuple[int, str]]:
    """(line number, spelling) for each spelling of `name` in `text`."""
    for match in name.pattern().finditer(text):
        if not _glued(text, match.start(), match.end()):
            yield text.count("\n", 0, match.start()) + 1, match.group()


# --- the project's files -----------------------------------------------------------------------


def project_paths(root: Path) -> Iterator[Path]:
    """Every file and folder of the project, relative to `root`, top-down; symbolic links are
    not followed (the shared virtualenv is one)."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if name not in SKIPPED_FOLDERS and not Path(folder, name).is_symlink()
        )
        here = Path(folder).relative_to(root)
        for name in subfolders:
            yield here / name
        for name in sorted(files):
            if not Path(folder, name).is_symlink():
                yield here / name


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (a database, an image)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def current_name(root: Path) -> Name:
    try:
        project = tomllib.loads((root / PYPROJECT).read_text())["project"]
        name = project["name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as error:
        raise Refused(f"{PYPROJECT} has no [project] name to rename from ({error})") from error
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise Refused(f"[project] name in {PYPROJECT} is not a project name: {name!r}")
    return Name.parse(name)


# --- checks ------------------------------------------------------------------------------------


def check_name(name: str, title: str | None, root: Path) -> tuple[Name, Name]:
    """(current name, new name), or Refused."""
    if not NAME_PATTERN.fullmatch(name):
        raise Refused(
            f"{name!r} is not a project name: use lower-case letters and digits, in words "
            "joined by single dashes, starting with a letter"
        )
    if len(name) > NAME_MAX_LENGTH:
        raise Refused(
            f"{name!r} is longer than {NAME_MAX_LENGTH} characters (the Grafana dashboard's "
            "uid is the name, and Grafana takes no more)"
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        raise Refused(f"{name!r} is a namespace Kubernetes keeps for itself")
    old = current_name(root)
    if name == old.slug:
        raise Refused(f"{name!r} is already the project's name")
    if any(spellings(name, old)):
        raise Refused(f"{name!r} holds the current name, {old.slug!r}: it would stay everywhere")
    new = Name.parse(name, title)
    if title is not None and not (
        TITLE_PATTERN.fullmatch(title) and tuple(title.lower().split(" ")) == new.words
    ):
        raise Refused(
            f"title {title!r} must be the name's words, separated by single spaces, each in "
            f"the casing you want (for {name!r}: {Name.parse(name).title!r}, say)"
        )
    return old, new


def check_unused(new: Name, root: Path) -> None:
    """The new name must not be in the project yet: afterwards, each spelling of it has to be
    the project's name and nothing else."""
    found: list[str] = []
    for path in project_paths(root):
        found.extend(f"{path} (file name)" for _ in spellings(path.name, new))
        text = None if (root / path).is_dir() else read_text(root / path)
        found.extend(f"{path}:{line}: {spelled}" for line, spelled in spellings(text or "", new))
    if found:
        places = "; ".join(found[:SHOWN]) + (
            f"; and {len(found) - SHOWN} more" if found[SHOWN:] else ""
        )
        raise Refused(
            f"{new.slug!r} is already used in the project ({places}): it could not be told "
            "apart from the project's name; pick a name nothing here uses"
        )


def unused_name(root: Path = ROOT) -> str:
    """A name nothing in the project uses, to try the rename on (its tests, CI)."""
    words = ["trial", "shop", "api"]  # apart, not joined: as written here, they are no name
    for number in range(1, 100):
        # The number goes on the first word, so that no candidate holds another, even
        # loosely: a renamed copy's own rename tests can tell the two names apart.
        first = words[0] + (str(number) if number > 1 else "")
        candidate = "-".join([first, *words[1:]])
        try:
            check_unused(Name.parse(candidate), root)
        except Refused:
            continue
        return candidate
    raise Refused("every trial name is already used in the project")


# --- renaming ----------------------------------------------------------------------------------


@dataclass
class Plan:
    old: Name
    new: Name
    rewritten: dict[Path, str]  # file (where it is now) -> its new text
    moved: dict[Path, Path]  # file or folder (where it is now) -> its new path


def plan(name: str, title: str | None, root: Path) -> Plan:
    """What the rename would change, after every check; nothing is written."""
    old, new = check_name(name, title, root)
    check_unused(new, root)
    rewritten: dict[Path, str] = {}
    moved: dict[Path, Path] = {}
    for path in project_paths(root):
        if path in KEPT:
            continue
        renamed = path.parent / respell(path.name, old, new)
        if renamed != path:
            moved[path] = renamed
        if (root / path).is_file():
            text = read_text(root / path)
            if text is not None and (changed := respell(text, old, new)) != text:
                rewritten[path] = changed
    for path, renamed in moved.items():
        if (root / renamed).exists():
            raise Refused(f"{path} would become {renamed}, which exists")
    return Plan(old, new, rewritten, moved)


def apply(changes: Plan, root: Path) -> None:
    """Each file's text first, where it is; then the names, deepest first, so that a folder
    is renamed after everything inside it."""
    for path, text in changes.rewritten.items():
        (root / path).write_bytes(text.encode("utf-8"))
    for path in sorted(changes.moved, key=lambda path: len(path.parts), reverse=True):
        (root / path).rename(root / changes.moved[path])


def rename(name: str, title: str | None = None, root: Path = ROOT) -> Plan:
    changes = plan(name, title, root)
    apply(changes, root)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scaffold.rename",
        description="Rename the project: every spelling of its name, everywhere but LICENSE.",
    )
    parser.add_argument("name", help="lower-case words joined by dashes")
    parser.add_argument("--title", help="the name's words as the docs show them")
    args = parser.parse_args(argv)
    try:
        changes = rename(args.name, args.title)
    except Refused as refusal:
        print(f"rename: refused: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    old, new = changes.old, changes.new
    print(f"renamed {old.slug} to {new.slug} (title {new.title!r}):")
    for path in sorted(changes.rewritten):
        print(f"  rewrote {path}")
    for path in sorted(changes.moved):
        renamed = Path(*(respell(part, old, new) for part in path.parts))
        print(f"  moved   {path} -> {renamed}")
    print(
        "LICENSE is unchanged: it keeps the template's copyright notice, as the MIT licence asks."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
