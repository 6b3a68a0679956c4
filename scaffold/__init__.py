"""Generate a new feature folder and its tests, shaped exactly like the ones already here.

    python -m scaffold widgets      # or: make feature name=widgets

writes features/widgets/ (models, errors, service, router, and permissions: the two that
reach every owner's widgets), tests/widgets/, and registers the feature in
features/registry.py. Every check runs before the first file is written, so a refused name
leaves the tree untouched.
"""

import ast
import keyword
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
REGISTRY = Path("features") / "registry.py"
REGISTRY_NAME = "INSTALLED_FEATURES"

# Lower-case words joined by single underscores, ending in "s": `widgets`, `blog_posts`.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*s$")
# Index and constraint names embed the table name; PostgreSQL cuts identifiers at 63 bytes.
NAME_MAX_LENGTH = 32
# A name no feature will ever take; rendering with it shows which identifiers the templates
# use on their own, so a real name that would shadow one of them can be refused.
PROBE_NAME = "zzqprobes"
EXIT_REFUSED = 2


class Refused(Exception):
    """The name cannot become a feature; the message says why."""


@dataclass(frozen=True)
class Names:
    name: str  # blog_posts: package, table, list function
    item: str  # blog_post: variables, path parameter blog_post_id
    model: str  # BlogPost: the table class, and the prefix of its schemas
    models: str  # BlogPosts: BlogPostsPublic
    slug: str  # blog-posts: URL prefix and OpenAPI tag
    human: str  # blog post: docs and messages

    @classmethod
    def from_plural(cls, name: str) -> "Names":
        item = singularize(name)
        human = item.replace("_", " ")
        return cls(
            name=name,
            item=item,
            model=camel_case(item),
            models=camel_case(name),
            slug=name.replace("_", "-"),
            human=human,
        )

    def placeholders(self) -> dict[str, str]:
        humans = self.name.replace("_", " ")
        article = "an" if self.human[0] in "aeiou" else "a"
        return {
            "name": self.name,
            "item": self.item,
            "Model": self.model,
            "Models": self.models,
            "slug": self.slug,
            "human": self.human,
            "Human": self.human.capitalize(),
            "humans": humans,
            "Humans": humans.capitalize(),
            "a_human": f"{article} {self.human}",
            "URL_CONSTANT": self.name.upper(),
        }


def singularize(name: str) -> str:
    """Plain English plurals only: categories -> category, boxes -> box, widgets -> widget."""
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return name[:-2]
    return name[:-1]


def camel_case(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


# --- checks ----------------------------------------------------------------------------------


def taken_names(root: Path) -> dict[str, Path]:
    """Names that already mean something here, and where: features, test folders, core and
    top-level modules (`features/<name>.py` too, since `features/registry.py` exists)."""
    taken: dict[str, Path] = {}
    for folder in (root / "features", root / "tests", root / "core", root):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_dir() and not path.name.startswith((".", "_")):
                taken.setdefault(path.name, path.relative_to(root))
            elif path.suffix == ".py":
                taken.setdefault(path.stem, path.relative_to(root))
    return taken


def existing_tables_and_prefixes(root: Path) -> tuple[set[str], set[str]]:
    """Table names and URL prefixes of the features already there, read without importing."""
    tables: set[str] = set()
    prefixes: set[str] = set()
    for models in (root / "features").glob("*/models.py"):
        tables.update(re.findall(r"__tablename__\s*=\s*[\"']([^\"']+)", models.read_text()))
    for router in (root / "features").glob("*/router.py"):
        prefixes.update(re.findall(r"prefix\s*=\s*[\"']/([^\"'/]+)", router.read_text()))
    return tables, prefixes


def check_name(name: str, root: Path) -> Names:
    if not NAME_PATTERN.fullmatch(name):
        raise Refused(
            f"{name!r} is not a plural snake_case name: use lower-case letters, digits and "
            "single underscores, start with a letter and end in 's' (e.g. widgets, blog_posts)"
        )
    if len(name) > NAME_MAX_LENGTH:
        raise Refused(f"{name!r} is longer than {NAME_MAX_LENGTH} characters")
    names = Names.from_plural(name)
    for word in (name, names.item):
        if keyword.iskeyword(word) or keyword.issoftkeyword(word):
            raise Refused(f"{word!r} is a Python keyword")
    taken = taken_names(root)
    if name in taken:
        raise Refused(f"{name!r} is taken: {taken[name]} already exists")
    tables, prefixes = existing_tables_and_prefixes(root)
    if name in tables:
        raise Refused(f"a table named {name!r} already exists")
    if names.slug in prefixes:
        raise Refused(f"the URL prefix /{names.slug} is already taken")
    return names


def identifiers(source: str) -> set[str]:
    """Every name a module binds or reads: imports, classes, functions, arguments, variables."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.alias):
            found.add((node.asname or node.name).split(".")[0])
    return found


def check_no_shadowing(files: dict[Path, str], names: Names) -> None:
    """A name like `sessions` would make a class `Session` that hides sqlmodel's import.

    The probe rendering tells apart the identifiers the name creates from the ones the
    templates bring; the name is refused when one of its own collides with either.
    """
    probe = Names.from_plural(PROBE_NAME)
    probe_files = render(probe)
    # Longest first, so `Zzqprobes` is not read as `Zzqprobe` + "s".
    pairs = [
        (probe.models, names.models),
        (probe.model, names.model),
        (probe.name, names.name),
        (probe.item, names.item),
        (probe.name.upper(), names.name.upper()),
    ]
    tokens = sorted(pairs, key=lambda pair: -len(pair[0]))

    def translate(word: str) -> str:
        for probe_token, token in tokens:
            word = word.replace(probe_token, token)
        return word

    # Both renderings list the same templates in the same order.
    for (path, source), probe_source in zip(files.items(), probe_files.values(), strict=True):
        try:
            identifiers(source)
        except SyntaxError as error:
            raise Refused(f"{names.name!r} makes {path} invalid Python: {error.msg}") from error
        probe_words = identifiers(probe_source)
        derived = {word for word in probe_words if probe.item in word.lower()}
        fixed = probe_words - derived
        mine = [translate(word) for word in derived]
        clashes = sorted({word for word in mine if word in fixed or mine.count(word) > 1})
        if clashes:
            raise Refused(
                f"{names.name!r} would make names that clash in {path} "
                f"({', '.join(clashes)}); pick another name"
            )


# --- rendering -------------------------------------------------------------------------------


def render(names: Names) -> dict[Path, str]:
    """Target path (relative to the root) -> file content."""
    values = names.placeholders()
    files: dict[Path, str] = {}
    for template in sorted((TEMPLATES / "feature").glob("*.tmpl")):
        target = Path("features") / names.name / template.name.removesuffix(".tmpl")
        files[target] = Template(template.read_text()).substitute(values)
    for template in sorted((TEMPLATES / "tests").glob("*.tmpl")):
        filename = template.name.removesuffix(".tmpl").replace("feature", names.name)
        target = Path("tests") / names.name / filename
        files[target] = Template(template.read_text()).substitute(values)
    return files


def register(registry_source: str, name: str) -> str:
    """The registry with `name` added at the end of INSTALLED_FEATURES; unchanged if present."""
    tuple_node: ast.expr | None = None
    for node in ast.parse(registry_source).body:
        targets: list[ast.expr]
        if isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        elif isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == REGISTRY_NAME for target in targets):
            tuple_node = value
    if not isinstance(tuple_node, ast.Tuple) or tuple_node.end_lineno is None:
        raise Refused(f"{REGISTRY} has no {REGISTRY_NAME} = (...) tuple to add the feature to")
    installed = []
    for element in tuple_node.elts:
        if not (isinstance(element, ast.Constant) and isinstance(element.value, str)):
            raise Refused(f"{REGISTRY_NAME} in {REGISTRY} should hold only string literals")
        installed.append(element.value)
    if name in installed:
        return registry_source
    lines = registry_source.splitlines(keepends=True)
    closing = tuple_node.end_lineno - 1  # the line with the closing parenthesis
    if tuple_node.lineno == tuple_node.end_lineno or lines[closing].strip() != ")":
        raise Refused(
            f"{REGISTRY_NAME} in {REGISTRY} should be written one name per line, "
            "with the closing parenthesis on its own line"
        )
    indent = " " * (tuple_node.elts[0].col_offset if tuple_node.elts else 4)
    lines.insert(closing, f'{indent}"{name}",\n')
    return "".join(lines)


# --- writing ---------------------------------------------------------------------------------


def tidy(paths: list[Path], root: Path) -> bool:
    """Sort imports and format with the project's own ruff settings, because how long a line
    is, and so how it wraps, depends on the name. True when ruff is happy."""
    ruff = [sys.executable, "-m", "ruff"]
    files = [str(path) for path in paths]
    try:
        subprocess.run(  # noqa: S603 - fixed command, our own file names
            [*ruff, "check", "--fix-only", "--quiet", *files], cwd=root, check=False
        )
        formatted = subprocess.run(  # noqa: S603
            [*ruff, "format", "--quiet", *files], cwd=root, check=False
        )
        checked = subprocess.run(  # noqa: S603
            [*ruff, "check", "--quiet", *files], cwd=root, check=False
        )
    except OSError:
        return False
    return formatted.returncode == 0 and checked.returncode == 0


def generate(name: str, root: Path = ROOT) -> list[Path]:
    """Check everything, then write the files and register the feature; the paths written."""
    names = check_name(name, root)
    files = render(names)
    check_no_shadowing(files, names)
    registry_path = root / REGISTRY
    registry = register(registry_path.read_text(), name)
    clashing = [path for path in files if (root / path).exists()]
    if clashing:
        raise Refused(f"{clashing[0]} already exists")

    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        with (root / path).open("x") as file:  # "x": never overwrite, even if raced
            file.write(content)
    if registry == registry_path.read_text():
        return list(files)
    registry_path.write_text(registry)
    return [*files, REGISTRY]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m scaffold <plural_snake_case_name>   (e.g. widgets)")
        return EXIT_REFUSED
    name = args[0]
    try:
        written = generate(name)
    except Refused as refusal:
        print(f"scaffold: refused: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    for path in written:
        print(f"  wrote {path}")
    python_files = [ROOT / path for path in written if path.suffix == ".py"]
    clean = tidy([path for path in python_files if path.name != "registry.py"], ROOT)
    if not clean:
        print("scaffold: ruff was not satisfied with the generated code: run `make lint`")
    slug = Names.from_plural(name).slug
    print(
        "\nNext:\n"
        f'  make migration m="add {name}"   # review the file in migrations/versions/\n'
        "  make migrate\n"
        f"  make test                       # tests/{name} runs against the new table\n"
        f"Then make the fields your own; the routes are under /api/v1/{slug} in /docs."
    )
    return 0 if clean else 1
