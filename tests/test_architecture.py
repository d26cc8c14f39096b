"""The layout's rules, read from the project's own imports (docs/design.md, "What may import what").

- ``mail/`` (bytes in, parsed message out) imports nothing of ours;
- ``rules/`` (what is this message?) imports only ``mail/``;
- ``storage/`` (the only place that builds SQL) imports nothing of ours;
- ``relay/`` may use all three;
- SQLAlchemy's query builders (``select``, ``update``, ``func``, ...) are imported only in ``storage/``;
- there is no import cycle between our modules, counting imports inside functions;
- an import inside a function is only a deliberately deferred third-party library, with a comment.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mail", "rules", "relay", "storage")
MAY_IMPORT = {
    "mail": set(),
    "rules": {"mail"},
    "storage": set(),
    "relay": {"mail", "rules", "storage"},
}
# What builds SQL: anything from these modules, and these names from ``sqlalchemy``.
SQL_MODULES = ("sqlalchemy.sql", "sqlalchemy.dialects", "sqlalchemy.sql.expression", "sqlalchemy.future")
SQL_BUILDERS = frozenset({
    "select", "update", "insert", "delete", "func", "and_", "or_", "not_", "text", "case", "cast", "literal",
    "literal_column", "exists", "union", "union_all", "join", "outerjoin", "column", "table", "tuple_", "null",
    "true", "false", "desc", "asc", "distinct", "over", "bindparam", "values", "lambda_stmt", "extract",
    "between", "any_", "all_", "collate", "type_coerce", "within_group", "funcfilter",
})


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "relay.approvals.decide"
    target: str  # what it imports, e.g. "storage.queue" or "sqlalchemy"
    names: tuple[str, ...]  # for "from X import a, b"
    line: int
    in_function: bool
    commented: bool  # a comment on the line or just above it


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue  # Alembic's generated revision files follow Alembic's layout
            yield _module_name(path), path


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _commented(lines: list[str], line: int) -> bool:
    """A comment on the import's line, on the imports just above it, or on the line above those."""
    index = line - 1
    while index > 0 and lines[index - 1].strip().startswith(("import ", "from ")):
        index -= 1
    return any("#" in text for text in lines[max(0, index - 1) : line])


def _imports() -> list[Import]:
    found: list[Import] = []
    for module, path in _sources():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source, filename=str(path))
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        inside = {id(child) for function in functions for child in ast.walk(function)}
        for node in ast.walk(tree):
            targets: list[tuple[str, tuple[str, ...]]]
            if isinstance(node, ast.Import):
                targets = [(alias.name, ()) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [(_resolve(module, path, node), tuple(alias.name for alias in node.names))]
            else:
                continue
            commented = _commented(lines, node.lineno)
            for target, names in targets:
                found.append(Import(module, target, names, node.lineno, id(node) in inside, commented))
    return found


IMPORTS = _imports()
OURS = {module for module, _ in _sources()}


def _ours(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def _edges(item: Import) -> list[str]:
    """Our modules an import makes ``item.module`` depend on (``from pkg import submodule`` counts)."""
    if not _ours(item.target):
        return []
    edges = [item.target] if item.target in OURS else []
    edges += [f"{item.target}.{name}" for name in item.names if f"{item.target}.{name}" in OURS]
    return edges or [item.target]


def test_the_tree_was_read() -> None:
    assert {"mail", "rules", "relay", "storage"} <= {module.split(".")[0] for module in OURS}
    assert len(IMPORTS) > 200


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_imports_only_the_layers_below_it(package: str) -> None:
    wrong = [
        f"{item.module}:{item.line} imports {item.target}"
        for item in IMPORTS
        if item.module.split(".")[0] == package and _ours(item.target)
        and item.target.split(".")[0] not in MAY_IMPORT[package] | {package}
    ]
    assert wrong == [], f"{package}/ may import only {sorted(MAY_IMPORT[package]) or 'nothing of ours'}"


def test_sql_is_built_only_in_storage() -> None:
    wrong = []
    for item in IMPORTS:
        if item.module.split(".")[0] == "storage":
            continue
        if item.target == "sqlalchemy" and (not item.names or SQL_BUILDERS & set(item.names)):
            wrong.append(f"{item.module}:{item.line} imports {', '.join(item.names) or 'sqlalchemy'}")
        elif item.target.startswith(SQL_MODULES):
            wrong.append(f"{item.module}:{item.line} imports {item.target}")
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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


def test_no_import_cycles_even_through_imports_inside_functions() -> None:
    graph: dict[str, set[str]] = {module: set() for module in OURS}
    for item in IMPORTS:
        for target in _edges(item):
            if target != item.module:
                graph[item.module].add(target)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_are_deferred_libraries_with_a_reason() -> None:
    wrong = [
        f"{item.module}:{item.line} imports {item.target}"
        + (" (ours: import it at the top)" if _ours(item.target) else " (no comment says why it is deferred)")
        for item in IMPORTS
        if item.in_function and (_ours(item.target) or not item.commented)
    ]
    assert wrong == []


# Inside relay/, the stages a stage may use (docs/design.md): the pipeline reads top to bottom.
RELAY_STAGES = {
    "relay.config": set(),
    "relay.service": {"relay.config"},
    "relay.delivery": {"relay.config", "relay.service"},
    "relay.ingest": {"relay.config", "relay.service"},
    "relay.members": {"relay.config", "relay.service", "relay.delivery"},
    "relay.approvals": {"relay.config", "relay.service", "relay.delivery"},
    "relay.routing": {"relay.config", "relay.service", "relay.delivery", "relay.members", "relay.approvals"},
    "relay.jobs": {"relay.config", "relay.service", "relay.delivery", "relay.members"},
    "relay.service.daemon": {"relay.config", "relay.service", "relay.delivery", "relay.ingest", "relay.members",
                             "relay.approvals", "relay.routing", "relay.jobs"},
    "relay.devservers": {"relay.config", "relay.service", "relay.service.daemon"},
}


def _stage(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "relay" or len(parts) < 2:
        return parts[0]
    return "relay.service.daemon" if parts[1:3] == ["service", "daemon"] else f"relay.{parts[1]}"


def test_relay_stages_point_one_way() -> None:
    wrong = []
    for item in IMPORTS:
        stage = _stage(item.module)
        if not stage.startswith("relay.") or stage == "relay.cli":
            continue  # the command line may use every stage
        for target in _edges(item):
            used = _stage(target)
            if used.startswith("relay.") and used != stage and used not in RELAY_STAGES[stage]:
                wrong.append(f"{item.module}:{item.line} ({stage}) imports {target} ({used})")
    assert wrong == []
