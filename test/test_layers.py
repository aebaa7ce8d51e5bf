"""The package's layering, checked on the source: who may import whom.

Every import counts, also those inside functions (a lazy import is still a
dependency): no module imports a command-line front end (cli, ros_cli); only the
front ends import the applications (mcucoder_ros.apps); and there is no import
circle among the package's modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "mcucoder_ros"
FRONT_ENDS = {"mcucoder_ros.cli", "mcucoder_ros.ros_cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The module (or package) an import refers to, if it is one of ours."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    root = ".".join(base[:len(base) - node.level + 1])
                    src = f"{root}.{node.module}" if node.module else root
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" for a in node.names] + [src]
            for t in targets:
                r = _resolve(t, modules)
                if r and r != mod and r != "mcucoder_ros":
                    graph[mod].add(r)
    return graph


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    g = import_graph()
    assert "mcucoder_ros.codec.model" in g["mcucoder_ros.apps.bench_codec"]
    assert "mcucoder_ros.pipeline" in g["mcucoder_ros.apps.demo"]        # a lazy import inside a function


def test_no_import_circles():
    assert _cycles(import_graph()) == []


def test_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_the_front_ends_and_only_they_import_applications():
    for mod, deps in import_graph().items():
        assert not deps & FRONT_ENDS, f"{mod} imports a command-line module: {deps & FRONT_ENDS}"
        if mod in FRONT_ENDS or mod.startswith("mcucoder_ros.apps"):
            continue
        apps = {d for d in deps if d.startswith("mcucoder_ros.apps")}
        assert not apps, f"library module {mod} imports applications {apps}"
