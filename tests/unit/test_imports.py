"""The shape of the house, from the import graph (read with ``ast``; nothing is imported).

* Settings stop at the commands and the composition root: the library packages (``schemas``,
  ``alerts``, ``board``, ``streams``) never import ``pathwatch.config``, ``pathwatch.parts``
  or the CLI, directly (at module level, in a function or for type checking) or through
  other library modules at run time.
* Imports run one way: ``schemas`` <- ``alerts`` <- ``board`` / ``streams`` <- ``pathwatch``,
  and only ``pathwatch.cli`` imports ``pathwatch.cli``.
* No import cycles between modules (run-time imports; ``TYPE_CHECKING`` blocks are left out).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "alerts", "board", "streams", "pathwatch")
LIBRARIES = ("schemas", "alerts", "board", "streams")
SETTINGS_SIDE = ("pathwatch.config", "pathwatch.parts", "pathwatch.cli")

# What each package may import besides itself. pathwatch.metrics is the typed metrics bundle
# (no settings) the live stages write to.
ALLOWED: Mapping[str, frozenset[str]] = {
    "schemas": frozenset(),
    "alerts": frozenset({"schemas"}),
    "board": frozenset({"schemas", "alerts"}),
    "streams": frozenset({"schemas", "alerts", "pathwatch.metrics"}),
}

# Known exceptions, owned by other engineers' work in progress (issue 16): they still read
# the settings themselves. The lead removes each line once its module takes plain parameters
# (the composition root builds them), and this test then holds them to the rules too.
KNOWN_EXCEPTIONS: frozenset[str] = frozenset()  # none left after the redesign

Graph = Mapping[str, frozenset[str]]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (``a.b.C`` -> ``a.b``), or None if not ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }


def imported(source: str, *, type_checking: bool) -> Iterator[str]:
    """Every project module ``source`` imports: at module level and in functions, and with
    ``type_checking`` also those under ``if TYPE_CHECKING:``."""
    tree = ast.parse(source)
    skip = set() if type_checking else _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            module = _resolve(name)
            if module is not None:
                yield module


@cache
def graph(*, type_checking: bool) -> Graph:
    """The project's import graph: module -> the project modules it imports."""
    return {
        name: frozenset(imported(path.read_text(), type_checking=type_checking)) - {name}
        for name, path in MODULES.items()
    }


def _package(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, prefixes: tuple[str, ...] | frozenset[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def settings_imports(direct: Graph, runtime: Graph, exceptions: frozenset[str]) -> list[str]:
    """Library modules that import the settings side, directly or through library modules
    at run time (a walk stops at an exception: it is reported when its line is removed)."""
    problems = []
    for module in sorted(direct):
        if not _within(module, LIBRARIES) or module in exceptions:
            continue
        for target in sorted(direct[module]):
            if _within(target, SETTINGS_SIDE):
                problems.append(f"{module} imports {target}")
        seen, stack = {module}, [module]
        while stack:
            for target in runtime.get(stack.pop(), frozenset()):
                if target in seen:
                    continue
                seen.add(target)
                if _within(target, SETTINGS_SIDE):
                    problems.append(f"{module} reaches {target} at run time")
                elif _within(target, LIBRARIES) and target not in exceptions:
                    stack.append(target)
    return problems


def upward_imports(direct: Graph, exceptions: frozenset[str]) -> list[str]:
    """Imports against the direction schemas <- alerts <- board/streams <- pathwatch <- cli."""
    problems = []
    for module, targets in sorted(direct.items()):
        if module in exceptions:
            continue
        for target in sorted(targets):
            package = _package(module)
            if _package(target) == package and not _within(target, ("pathwatch.cli",)):
                continue
            if package in ALLOWED:
                if not _within(target, ALLOWED[package]):
                    problems.append(f"{module} imports {target}")
            elif _within(target, ("pathwatch.cli",)) and not _within(module, ("pathwatch.cli",)):
                problems.append(f"{module} imports {target}")
    return problems


def cycles(runtime: Graph) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in runtime.get(module, frozenset()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(runtime):
        if module not in index:
            visit(module)
    return found


def test_library_packages_do_not_import_settings_or_the_cli() -> None:
    assert settings_imports(graph(type_checking=True), graph(type_checking=False), KNOWN_EXCEPTIONS) == []


def test_imports_run_one_way() -> None:
    assert upward_imports(graph(type_checking=True), KNOWN_EXCEPTIONS) == []


def test_no_import_cycles() -> None:
    assert cycles(graph(type_checking=False)) == []


def test_the_known_exceptions_are_modules_that_still_need_them() -> None:
    direct, runtime = graph(type_checking=True), graph(type_checking=False)
    for module in sorted(KNOWN_EXCEPTIONS):
        assert module in MODULES, f"{module} is gone: remove it from KNOWN_EXCEPTIONS"
        rest = KNOWN_EXCEPTIONS - {module}
        still = settings_imports(direct, runtime, rest) + upward_imports(direct, rest)
        assert any(line.startswith(f"{module} ") for line in still), f"{module} is clean: remove the exception"


@pytest.mark.parametrize(
    ("source", "module", "problem"),
    [
        ("from pathwatch.config import Settings", "schemas.fake", "schemas.fake imports pathwatch.config"),
        ("def f():\n    from pathwatch import parts", "alerts.fake", "alerts.fake imports pathwatch.parts"),
        ("if TYPE_CHECKING:\n    from pathwatch.config import Settings", "streams.fake", "streams.fake imports pathwatch.config"),
        ("import pathwatch.cli.replay", "board.fake", "board.fake imports pathwatch.cli.replay"),
    ],
)
def test_the_checks_catch_settings_imports(source: str, module: str, problem: str) -> None:
    direct = {module: frozenset(imported(source, type_checking=True))}
    assert problem in settings_imports(direct, {module: frozenset()}, frozenset())


def test_the_checks_catch_indirect_upward_and_cyclic_imports() -> None:
    runtime = {
        "streams.a": frozenset({"streams.b"}),
        "streams.b": frozenset({"pathwatch.config"}),
        "alerts.c": frozenset({"streams.a"}),
        "pathwatch.metrics": frozenset({"pathwatch.cli"}),
        "schemas.d": frozenset({"schemas.e"}),
        "schemas.e": frozenset({"schemas.d"}),
    }
    assert "streams.a reaches pathwatch.config at run time" in settings_imports(runtime, runtime, frozenset())
    assert settings_imports(runtime, runtime, frozenset({"streams.b"})) == []
    upward = upward_imports(runtime, frozenset())
    assert "alerts.c imports streams.a" in upward
    assert "pathwatch.metrics imports pathwatch.cli" in upward
    assert cycles(runtime) == [["schemas.d", "schemas.e"]]
