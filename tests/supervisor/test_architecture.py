"""Rules of the house, checked: no import cycles in the supervisor, the operator imports only the
contract, the contract's field list is the same everywhere it is written, the core stays small."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from progset_operator.crd import program_schema
from progset_supervisor.config.haproxy import KEYWORDS
from progset_supervisor.config.model import BACKOFF_KEYS, PROGRAM_KEYS

REPO = Path(__file__).resolve().parents[2]
SUPERVISOR = REPO / "supervisor" / "progset_supervisor"
OPERATOR = REPO / "operator" / "progset_operator"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports, anywhere in the file (TYPE_CHECKING and function
    bodies too: they couple modules as much as top-level imports), as names relative to the package."""
    own = module_name(path, root).split(".") if module_name(path, root) else []
    base = own if path.name == "__init__.py" else own[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[:len(base) - node.level + 1]
                target = ".".join([*parts, *([node.module] if node.module else [])])
            elif node.module and (node.module == package or node.module.startswith(package + ".")):
                target = node.module[len(package):].lstrip(".")
            else:
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}".lstrip(".") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name[len(package) + 1:] for a in node.names if a.name.startswith(package + "."))
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: {t for t in imports_of(path, root, package) if t in files and t != name}
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_supervisor() -> None:
    assert cycles(import_graph(SUPERVISOR, "progset_supervisor")) == []


def test_the_operator_imports_only_the_contract_of_the_supervisor() -> None:
    """The operator validates and renders with ``progset_supervisor.config``; process management (core,
    runtime, cli, http) never comes into its process."""
    wrong = {}
    for path in OPERATOR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("progset_supervisor") and not (
                        name == "progset_supervisor" or name.startswith("progset_supervisor.config")):
                    wrong[f"{path.relative_to(REPO)}:{node.lineno}"] = name
    assert wrong == {}


def test_the_core_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (SUPERVISOR / "core").glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 420} == {}


# -- one contract, written in four places ---------------------------------------------------------------
REPEATABLE = {"env": "env", "depends-on": "dependsOn", "depends-on-condition": "dependsOnCondition"}


def haproxy_fields() -> set[str]:
    fields = {"name"}  # `program <name>`
    for keyword, spec in KEYWORDS.items():
        field = spec.field if spec.field is not None else REPEATABLE[keyword]
        field = field.split()[0]  # "readiness options": the options of the readiness check
        fields.add("backoff" if field in BACKOFF_KEYS else field)
    return fields


def readme_fields(*, without_keyword: bool = False) -> set[str]:
    """Fields of the README's table (``without_keyword``: those whose HAProxy keyword cell is "—")."""
    text = (REPO / "README.md").read_text()
    table = text.split("### Program fields", 1)[1].split("\n\n", 2)[1]
    fields: set[str] = set()
    for line in table.splitlines()[2:]:
        first, keyword = line.strip("|").split(" | ")[:2]
        if without_keyword and keyword.strip() != "—":
            continue
        for word in re.findall(r"`([A-Za-z.]+)`", first):
            fields.add(word.split(".")[0] if "." in word else word)
    return fields - BACKOFF_KEYS


def test_the_field_list_is_the_same_in_the_model_the_crd_the_haproxy_keywords_and_the_readme() -> None:
    crd = set(program_schema()["properties"])
    assert crd == set(PROGRAM_KEYS)
    assert haproxy_fields() == set(PROGRAM_KEYS) - readme_fields(without_keyword=True)  # README says "—"
    assert readme_fields() == set(PROGRAM_KEYS)
    assert set(program_schema()["properties"]["backoff"]["properties"]) == set(BACKOFF_KEYS)
