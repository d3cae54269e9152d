"""The layout's promises, read from the source with `ast` (nothing is imported): the project's
modules import each other without a cycle, dependencies run one way between the packages
(sde_lib -> models -> samplers -> configs -> training -> scripts), and no project module is
imported inside a function (only heavy optional third-party packages are deferred)."""
import ast
import functools
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# In dependency order: a package may import itself and the packages before it.
PACKAGES = ("sde_lib", "models", "samplers", "configs", "training", "scripts")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(path): ast.parse(path.read_text(), str(path))
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, importer: str, known: set[str]) -> set[str]:
    """The project modules an import statement runs: the most specific known module of each name."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative to the importer's package (itself, for a package's __init__)
            parts = importer.split(".")
            is_package = any(name.startswith(importer + ".") for name in known)
            parts = parts[: len(parts) - node.level + is_package]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    targets = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            targets.add(name)
    return targets


@functools.cache
def _graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """Module -> the project modules it imports anywhere in its body; and the imports of project
    modules made inside a function, as (module, line, imported)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    deferred = []
    for name, tree in modules.items():
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        inside = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets = _targets(node, name, known) - {name}
                graph[name] |= targets
                deferred += [(name, node.lineno, t) for t in sorted(targets) if id(node) in inside]
    return graph, deferred


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_checker_finds_a_cycle_and_resolves_submodules():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    known = {"training", "training.data", "training.metrics"}
    assert _targets(ast.parse("from training import data, builders").body[0], "x", known) == {
        "training.data", "training"}
    assert _targets(ast.parse("import training.metrics as m").body[0], "x", known) == {"training.metrics"}
    assert _targets(ast.parse("from .metrics import f").body[0], "training.data", known) == {"training.metrics"}


def test_the_project_has_no_import_cycle():
    graph, _ = _graph()
    assert {"training.train_loop", "training.experiment", "scripts.main"} <= set(graph)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_dependencies_run_one_way_between_packages():
    graph, _ = _graph()
    rank = {package: i for i, package in enumerate(PACKAGES)}
    backwards = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                       if rank[b.split(".")[0]] > rank[a.split(".")[0]])
    assert not backwards, backwards


@pytest.mark.parametrize("package", PACKAGES)
def test_project_modules_are_imported_at_module_level(package):
    _, deferred = _graph()
    inside = [f"{module}:{line} imports {target}" for module, line, target in deferred
              if module.split(".")[0] == package]
    assert not inside, inside
