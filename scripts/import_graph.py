"""Print the import graph between this project's modules (lft_core/*, ui/*, app) as a mermaid diagram.

Read from the source with `ast`, nothing imported. Arrows are split by when they run:
- module level: runs on `import x`;
- function level: an import inside a def, run on first call (how heavy libraries are deferred);
- type only: under `if TYPE_CHECKING:`, never run.

    python scripts/import_graph.py            # layers, a mermaid drawing and a table: docs/structure.md
    python scripts/import_graph.py --check    # exit 1 on a circle or an arrow back up, naming it

Neither module- nor function-level arrows may form a circle (a function-level import does not make a circle
harmless, only late), and lft_core never points back up to ui/ or app.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lft_core", "ui")
TOP_MODULES = ("app",)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str
    """module, function or type"""


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for the packages' .py files (one level deep) and the top-level modules."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    for name in TOP_MODULES:
        if (root / f"{name}.py").exists():
            found[name] = root / f"{name}.py"
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """(ast import node, kind) for every import statement, kind by where it sits."""

    def walk(node, kind):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, kind
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, "type" if kind == "type" else "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for part in child.body:
                    yield from walk(ast.Module(body=[part], type_ignores=[]), "type")
                for part in child.orelse:
                    yield from walk(ast.Module(body=[part], type_ignores=[]), kind)
            else:
                yield from walk(child, kind)

    yield from walk(tree, "module")


def _targets(node: ast.Import | ast.ImportFrom, source: str, known: dict[str, Path]) -> list[str]:
    """The project modules an import statement loads ('from lft_core import events' loads lft_core.events)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [n for n in names if n in known]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = source if known[source].stem == "__init__" else source.rpartition(".")[0]
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    found = []
    for alias in node.names:
        if f"{base}.{alias.name}" in known:
            found.append(f"{base}.{alias.name}")
        elif base in known:
            found.append(base)
    return list(dict.fromkeys(found))


def edges(root: Path = ROOT) -> list[Edge]:
    known = modules(root)
    found = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, kind in _imports(tree):
            for target in _targets(node, source, known):
                if target != source:
                    found.append(Edge(source, target, kind))
    return sorted(set(found), key=lambda e: (e.source, e.kind, e.target))


def circles(found: list[Edge], kinds: tuple[str, ...] = ("module",)) -> list[list[str]]:
    """Every elementary circle among the arrows of the given kinds, each as [a, b, ..., a] (a plain DFS from each
    node in turn: the graph has a few dozen nodes)."""
    graph: dict[str, set[str]] = {}
    for e in found:
        if e.kind in kinds:
            graph.setdefault(e.source, set()).add(e.target)
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    result = []
    for i, start in enumerate(nodes):
        allowed = set(nodes[i:])
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    result.append([*path, start])
                elif nxt in allowed and nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return result


def upward(found: list[Edge]) -> list[Edge]:
    """Arrows from the engine (lft_core) up to the app layer (ui/, app), of any kind."""
    return [e for e in found if e.source.split(".")[0] == "lft_core" and e.target.split(".")[0] != "lft_core"]


def _node(name: str) -> str:
    return "m_" + name.replace(".", "_")


def mermaid(found: list[Edge]) -> str:
    """The module-level arrows (solid) and TYPE_CHECKING-only ones (dotted), grouped by package. Function-level
    arrows would double the drawing; table() lists them."""
    shown = [e for e in found if e.kind != "function"]
    names = sorted({n for e in found for n in (e.source, e.target)})
    lines = ["graph LR"]
    for layer in ("app", *PACKAGES):
        members = [n for n in names if n.split(".")[0] == layer]
        if layer in PACKAGES:
            lines.append(f"  subgraph pkg_{layer} [{layer}/]")
        lines += [f"    {_node(n)}[{n}]" for n in members]
        if layer in PACKAGES:
            lines.append("  end")
    lines += [f"  {_node(e.source)} {'-->' if e.kind == 'module' else '-.->'} {_node(e.target)}" for e in shown]
    return "\n".join(lines)


def levels(found: list[Edge]) -> dict[str, int]:
    """Each module's height in the graph of runtime arrows (module and function level): 0 imports no project
    module, n imports only modules below n. Defined because the graph has no circle."""
    graph: dict[str, set[str]] = {}
    for e in found:
        graph.setdefault(e.source, set())
        graph.setdefault(e.target, set())
        if e.kind != "type":
            graph[e.source].add(e.target)
    memo: dict[str, int] = {}

    def height(node: str, seen: tuple = ()) -> int:
        if node not in memo:
            if node in seen:
                raise ValueError(f"import circle through {node}")
            memo[node] = 1 + max((height(t, (*seen, node)) for t in graph[node]), default=-1)
        return memo[node]

    return {node: height(node) for node in sorted(graph)}


def table(found: list[Edge]) -> str:
    """Per module: what it imports at module level, and what only inside functions."""
    rows = ["| module | module-level imports | function-level imports |", "|---|---|---|"]
    for source in sorted({e.source for e in found}):
        at = {k: ", ".join(e.target for e in found if e.source == source and e.kind == k)
              for k in ("module", "function")}
        rows.append(f"| {source} | {at['module']} | {at['function']} |")
    return "\n".join(rows)


HEADER = """# Structure: imports between modules

Generated by `python scripts/import_graph.py > docs/structure.md`: rerun it after changing imports.
`python scripts/import_graph.py --check` (which tests/test_structure.py also checks) names a circle or an arrow
back up.

Rules the drawing shows: no circle among imports, at module or at function level; `lft_core/` never imports `ui/`
or `app.py`; `ui/` reaches `lft_core` only through its public API (`lft_core/__init__.py`, whose lazy names are
the dotted arrows: imported on first use, listed under `TYPE_CHECKING`). One home per policy: `lft_core/hub.py`
(is the Hub reachable), `lft_core/batching.py` (batch size, micro-batches, learning-rate scaling),
`lft_core/config.py` `default_max_length` (max length), `lft_core/values.py` (typed values from strings),
`lft_core/records.py` (a saved record's keys: defaults for missing ones, written back as read) with
`RunReport.from_dict`/`to_dict` in `lft_core/report.py` (the report's); the measurements behind the defaults are in
`benchmarks/results/defaults.md`.
"""


def main(argv: list[str]) -> int:
    found = edges()
    if "--check" in argv:
        problems = [" -> ".join(c) for c in circles(found, ("module", "function"))]
        problems += [f"{e.source} -> {e.target} (back up)" for e in upward(found)]
        print("\n".join(problems) or "no circle, no arrow back up")
        return 1 if problems else 0
    by_level: dict[int, list[str]] = {}
    for name, level in levels(found).items():
        by_level.setdefault(level, []).append(name)
    print(HEADER)
    print("Layers (a module imports only modules of lower layers, at module or function level):\n")
    print("\n".join(f"{level}. {', '.join(by_level[level])}" for level in sorted(by_level)) + "\n")
    print("Module-level imports (solid) and imports for type checking only (dotted):\n")
    print("```mermaid\n" + mermaid(found) + "\n```\n")
    print("Every import, by when it runs (a function-level import runs on the function's first call):\n")
    print(table(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
