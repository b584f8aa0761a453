"""No import cycles inside leakjax, and leakjax's own imports at the top of modules.

A static check with `ast` over leakjax/ (nothing is imported, so it takes well under a second):
every ``import leakjax.x`` / ``from leakjax.x import y`` of every module, at module level or
inside a function (an import moved into a function to dodge a cycle is still a cycle), is an
edge; ``from leakjax.x import y`` points at ``leakjax.x.y`` when ``y`` is a submodule, and an
import of ``leakjax.x.y`` also runs ``leakjax.x``'s ``__init__`` (except the importer's own
packages, which are already being imported). The graph must have no cycle.

The rule for function-level imports (BUILD_NOTES, Architecture): leakjax modules and the
standard library are imported at the top; only optional or heavy third-party packages that a
few code paths need (matplotlib, PIL, scipy, scikit-learn, tensorflow_datasets, evosax) may be
imported inside the function that uses them.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "leakjax"

# Imports (importer, module as written) allowed to close a cycle or to sit inside a function:
# none (the client-object change of issue 26 removed the fl <-> defenses and fl <->
# observation cycles). Nothing may be added here.
ALLOWED: set[tuple[str, str]] = set()


def module_files(
    root: pathlib.Path, package: str = PACKAGE
) -> dict[str, tuple[pathlib.Path, bool]]:
    """``{module name: (file, is_package)}`` of every module under ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_pkg: bool, mods) -> set[str]:
    """The modules one import statement of module ``name`` names: ``from pkg import sub`` names
    ``pkg.sub`` when it is a submodule, else ``pkg`` (the name is defined by its __init__)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if node.level:  # relative: resolved against the importing module's package
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        src = ".".join(base + ([node.module] if node.module else []))
    else:
        src = node.module or ""
    return {f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names}


def import_graph(
    root: pathlib.Path, package: str = PACKAGE, allowed=frozenset()
) -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """The package's import graph ``{module: {modules it imports}}`` (every import, wherever it
    is, except ``if TYPE_CHECKING:`` blocks and the ``allowed`` (importer, imported module) pairs), and
    the function-level imports of package modules as ``(module, line, imported module)``."""
    mods = module_files(root, package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    nested: list[tuple[str, int, str]] = []
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function: set[int] = set()
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                in_function.update(id(n) for n in ast.walk(fn) if n is not fn)
        skipped: set[int] = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                skipped.update(id(c) for c in ast.walk(n))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in skipped:
                continue
            named = {t for t in _targets(node, name, is_pkg, mods) if t.split(".")[0] == package}
            if not named:
                continue
            if id(node) in in_function:
                nested.extend((name, node.lineno, t) for t in sorted(named))
            if any((name, t) in allowed for t in named):
                continue
            # importing a.b.c runs a.__init__ and a.b.__init__ first, except the importer's own
            # packages (already being imported): `from leakjax.p import sub` in leakjax.p.s is
            # not a cycle, `from leakjax.p import NAME` (a name of p's __init__) is one
            own = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 2)}
            parents = {
                ".".join(t.split(".")[:k]) for t in named for k in range(1, t.count(".") + 1)
            }
            graph[name].update(t for t in named | (parents - own) if t in mods and t != name)
    return graph, nested


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _cycle_report(graph, comps) -> str:
    return "\n".join(
        f"cycle: {', '.join(c)}\n"
        + "\n".join(f"  {m} -> {sorted(graph[m] & set(c))}" for m in c if graph[m] & set(c))
        for c in comps
    )


def test_leakjax_has_no_import_cycles():
    graph, _ = import_graph(ROOT, allowed=ALLOWED)
    assert len(graph) > 50  # the whole package was read
    comps = cycles(graph)
    assert not comps, "import cycles in leakjax:\n" + _cycle_report(graph, comps)


def test_leakjax_imports_its_own_modules_at_the_top():
    _, nested = import_graph(ROOT)
    hidden = [f"{m}:{line}: {w}" for m, line, w in nested if (m, w) not in ALLOWED]
    assert not hidden, "leakjax modules imported inside functions:\n" + "\n".join(hidden)


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_hidden_cycles_and_reads_submodule_imports(tmp_path):
    """The checker itself: a cycle closed inside a function is found; `from pkg import sub`
    inside pkg (the package's __init__ importing its submodules) is not a cycle, but
    `from pkg import name` of a name defined in the __init__ is; a cycle through a package's
    __init__ (a.x -> b.y runs b/__init__ -> a) is found."""
    _write(
        tmp_path,
        {
            "leakjax/__init__.py": "",
            "leakjax/p/__init__.py": "from leakjax.p import s1, s2\nNAME = 1\n",
            "leakjax/p/s1.py": "from leakjax.p import s2\n",
            "leakjax/p/s2.py": "import os\n",
            "leakjax/f.py": "def g():\n    from leakjax import h\n",
            "leakjax/h.py": "import leakjax.f\n",
            "leakjax/a/__init__.py": "",
            "leakjax/a/x.py": "from leakjax.b.y import Z\n",
            "leakjax/b/__init__.py": "from leakjax.a import x\n",
            "leakjax/b/y.py": "Z = 1\n",
        },
    )
    graph, nested = import_graph(tmp_path)
    assert graph["leakjax.p.s1"] == {"leakjax.p.s2"}
    assert cycles(graph) == [["leakjax.a.x", "leakjax.b"], ["leakjax.f", "leakjax.h"]]
    assert nested == [("leakjax.f", 2, "leakjax.h")]
    _write(tmp_path, {"leakjax/p/s2.py": "from leakjax.p import NAME\n"})
    graph, _ = import_graph(tmp_path)
    assert ["leakjax.p", "leakjax.p.s1", "leakjax.p.s2"] in cycles(graph)
    allowed = {("leakjax.h", "leakjax.f"), ("leakjax.a.x", "leakjax.b.y")}
    graph, _ = import_graph(tmp_path, allowed=allowed)
    assert cycles(graph) == [["leakjax.p", "leakjax.p.s1", "leakjax.p.s2"]]


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter (catches what a static check cannot: a name used
    before a partly imported module defines it). Slow: one interpreter per module."""
    names = sorted(m for m in module_files(ROOT) if not m.endswith("__main__"))  # runs the CLI
    failed = []
    for name in names:
        r = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
        if r.returncode:
            failed.append(f"{name}: {r.stderr.strip().splitlines()[-1:]}")
    assert not failed, "\n".join(failed)
