"""The house rules, read from the source: no import circle, the runtime never imports a recipe or the
CLI, no module over 500 lines, and a `Character` handle that stays small.

Imports are found with `ast` at module level and inside functions. The checker can leave out imports
under `if TYPE_CHECKING:` (they never run), but the package's own rules count them: no circle even
for a type checker, and "the runtime never imports recipes or the CLI". `importlib.import_module` by a computed name (the lazy exports of
`charforge/__init__.py`) is not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import charforge

PACKAGE = Path(charforge.__file__).resolve().parent
MAX_LINES = 500
MAX_CHARACTER_MEMBERS = 15
# The verbs' thin forwards on Character: each only imports its verb and calls it (checked below).
CHARACTER_FORWARDS = frozenset(
    {
        "feel", "bgm", "bgm_transition", "explain", "inpaint", "reinvert", "set_mask", "record_emotion",
        "learn_token", "learn_lora",
    }
)
NOT_RUNTIME = ("charforge.recipes", "charforge.cli")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(nodes: Iterable[ast.AST], *, skip_type_checking: bool) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in nodes:
        if skip_type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            found += _imports(node.orelse, skip_type_checking=True)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        found += _imports(ast.iter_child_nodes(node), skip_type_checking=skip_type_checking)
    return found


def import_graph(root: Path, *, skip_type_checking: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (`from pkg import sub` counts as `pkg.sub`)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for imp in _imports([ast.parse(path.read_text(), str(path))], skip_type_checking=skip_type_checking):
            if isinstance(imp, ast.Import):
                targets = [alias.name for alias in imp.names]
            else:
                base = imp.module or ""
                if imp.level:
                    anchor = package.split(".")[: len(package.split(".")) - (imp.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in imp.names]
            for target in targets:
                while target and target not in files:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _in(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# the checker itself ---------------------------------------------------------------------------------


def test_checker_sees_lazy_circles_and_ignores_type_only_imports(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "handle.py").write_text("def feel():\n    from toy.sub import verb\n    return verb.run()\n")
    (pkg / "sub" / "verb.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.handle import feel\n"
    )
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    graph = import_graph(pkg)
    assert graph["toy.handle"] == {"toy.sub.verb"} and graph["toy.sub.verb"] == set()
    assert cycles(graph) == [["toy.a", "toy.b"]]  # a function-level import closes a circle too
    (pkg / "sub" / "verb.py").write_text("from toy import handle\n")
    assert cycles(import_graph(pkg)) == [["toy.a", "toy.b"], ["toy.handle", "toy.sub.verb"]]


# the package ----------------------------------------------------------------------------------------


def test_no_import_cycle_anywhere():
    """Type-only imports count here too: the verb modules type against Protocols, so the arrows run one
    way for type checkers as well as at run time."""
    assert cycles(import_graph(PACKAGE, skip_type_checking=False)) == []


def test_runtime_never_imports_recipes_or_the_cli():
    graph = import_graph(PACKAGE, skip_type_checking=False)
    bad = {
        module: sorted(t for t in targets if _in(t, NOT_RUNTIME))
        for module, targets in graph.items()
        if not _in(module, NOT_RUNTIME)
    }
    assert {m: t for m, t in bad.items() if t} == {}


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def _character_class() -> ast.ClassDef:
    tree = ast.parse((PACKAGE / "character" / "handle.py").read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Character")


def test_character_has_at_most_15_public_members_besides_its_forwards():
    cls = _character_class()
    members = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    members |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    members |= {  # attributes set on self in any method
        t.attr
        for n in ast.walk(cls)
        if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }
    public = {m for m in members if not m.startswith("_")}
    assert CHARACTER_FORWARDS <= public
    assert len(public - CHARACTER_FORWARDS) <= MAX_CHARACTER_MEMBERS, sorted(public - CHARACTER_FORWARDS)


def test_character_forwards_are_thin():
    """A forward imports its verb and calls it: docstring, at most one import, at most two statements."""
    methods = {n.name: n for n in _character_class().body if isinstance(n, ast.FunctionDef)}
    for name in CHARACTER_FORWARDS:
        body = [s for s in methods[name].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        imports = [s for s in body if isinstance(s, ast.ImportFrom)]
        assert len(imports) <= 1 and len(body) - len(imports) <= 2, name
        assert not any(isinstance(n, (ast.For, ast.While, ast.If, ast.With)) for n in ast.walk(methods[name])), name


def test_only_the_store_talks_to_the_database():
    """No module outside charforge.store (and the migration scripts) imports SQLAlchemy, Alembic or sqlite3."""
    db_libs = ("sqlalchemy", "alembic", "sqlite3")
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path, PACKAGE)
        if _in(name, ("charforge.store", "charforge.migrations")):
            continue
        found = set()
        for imp in _imports([ast.parse(path.read_text())], skip_type_checking=True):
            names = [a.name for a in imp.names] if isinstance(imp, ast.Import) else [imp.module or ""]
            found |= {n for n in names if n.split(".")[0] in db_libs}
        if found:
            offenders[name] = sorted(found)
    assert offenders == {}
