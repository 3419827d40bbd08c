"""The direction of imports (docs/architecture.md) holds: no import circles among qbc/, envs/ and
agents/ (module level or inside functions), no layer imports a layer above it or a sibling it is
independent of, and function-local imports of qbc stay few and say why they are local. Modules
and functions stay short (at most 400 and 60 lines).

The import graph is read from the source with ``ast`` rather than by import-linter: envs/ and
agents/ install as ``qbc.envs`` and ``qbc.agents`` through setuptools' ``package-dir``, and
import-linter's graph (grimp) only walks the folder of ``qbc`` itself, so it would not see them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from repository import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

TREES = {"qbc": "qbc", "envs": "qbc.envs", "agents": "qbc.agents"}

#: The layers, top first: a module may import its own layer's part and the layers below it.
#: Parts of one layer (a tuple) are independent: neither imports the other. A part is a
#: subpackage or module of qbc; every one of them must be in exactly one layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("bench",),
    ("experiments",),
    ("sweep", "interactive", "certify"),
    ("training",),
    ("rollout",),
    ("data",),
    ("policy",),
    ("chunking", "ste", "compressive", "agents"),
    ("stepping",),
    ("envs", "tokenizer"),
    ("quantizers",),
    ("registry", "infra"),
    ("errors",),
)

#: Known exceptions, (importer, imported): none left (the chunk tokenizer comparison, experiment
#: code that imported upwards from qbc/chunking/, moved to qbc/experiments/).
ALLOWED: set[tuple[str, str]] = set()

#: Function-local imports of qbc: each for an optional dependency or lazy loading, with a
#: comment on its line saying so; at most this many in all.
MAX_LOCAL_IMPORTS = 20


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module under qbc/, envs/ and agents/."""
    found = {}
    for tree, package in TREES.items():
        for file in sorted((ROOT / tree).rglob("*.py")):
            parts = list(file.relative_to(ROOT / tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = file
    return found


MODULES = modules()


def _resolve(name: str) -> str | None:
    """The module ``name`` lives in: itself, else its longest prefix that is a module."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported qbc module, line, inside a function) for each qbc import of ``module``;
    imports under ``if TYPE_CHECKING:`` (annotations only) are left out."""
    file = MODULES[module]
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit_one(stmt, local)
                continue
            visit_one(child, local)

    def visit_one(node: ast.AST, local: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno, local) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in MODULES else base, node.lineno, local))
        visit(node, local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.Lambda)))

    visit(ast.parse(file.read_text()), False)
    out = []
    for name, line, local in found:
        target = _resolve(name) if name.startswith("qbc") else None
        if target is not None and target != module:
            out.append((target, line, local))
    return out


GRAPH = {m: imports(m) for m in MODULES}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def part_of(module: str) -> str | None:
    """The layer part of ``module`` (``qbc.rollout.coupled`` -> ``rollout``); None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_of(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def test_the_graph_is_read():
    # The checks below are only as good as the reader: it must see imports of every kind.
    edges = {(m, t, local) for m, found in GRAPH.items() for t, _, local in found}
    assert ("qbc.tokenizer", "qbc.quantizers", False) in edges
    assert ("qbc.agents.experts", "qbc.envs.control", False) in edges
    assert ("qbc.cli", "qbc.cli.flag_types", True) in edges
    assert ("qbc.training.data", "qbc.training.config", False) not in edges  # TYPE_CHECKING
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    graph = {m: {t for t, _, _ in found} for m, found in GRAPH.items()}
    found = circles(graph)
    assert not found, "import circles (module level and function-local):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_every_part_of_qbc_is_in_one_layer():
    parts = {part_of(m) for m in MODULES} - {None}
    placed = [p for layer in LAYERS for p in layer]
    assert len(placed) == len(set(placed)), "a part is in two layers"
    assert sorted(parts - set(placed)) == [], "add these to LAYERS"
    assert sorted(set(placed) - parts) == [], "LAYERS names parts that do not exist"


def test_no_layer_imports_upwards_or_sideways():
    wrong = set()
    for module, found in GRAPH.items():
        here = part_of(module)
        for target, line, _ in found:
            there = part_of(target)
            if here is None or there is None or here == there or (module, target) in ALLOWED:
                continue
            if layer_of(here) >= layer_of(there):
                why = "a part it is independent of" if layer_of(here) == layer_of(there) \
                    else "a layer above it"
                wrong.add(f"{MODULES[module].relative_to(ROOT)}:{line}: {module} imports "
                          f"{target}, {why}")
    assert not wrong, "\n".join(sorted(wrong))


def test_allowed_exceptions_still_exist():
    # An exception that no longer happens is removed from ALLOWED, so it cannot hide a new one.
    stale = [(module, target) for module, target in sorted(ALLOWED)
             if not any(t == target for t, _, _ in GRAPH[module])]
    assert not stale, stale


def test_function_local_qbc_imports_are_few_and_say_why():
    local = [(MODULES[m], line) for m, found in GRAPH.items()
             for _, line, is_local in found if is_local]
    statements = sorted(set(local))
    unmarked = [f"{file.relative_to(ROOT)}:{line}" for file, line in statements
                if "#" not in file.read_text().splitlines()[line - 1]]
    assert len(statements) <= MAX_LOCAL_IMPORTS, (
        f"{len(statements)} function-local qbc imports (at most {MAX_LOCAL_IMPORTS}): import at "
        "module level unless the import is of an optional dependency or deferred on purpose")
    assert not unmarked, ("function-local qbc imports without a comment saying why they are "
                          "local:\n" + "\n".join(unmarked))


def test_every_package_is_installed():
    # setuptools installs the packages pyproject.toml lists, no others: a new folder of qbc/
    # missing there works from the checkout and is absent from an installed qbc.
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    packages = {m for m, file in MODULES.items() if file.name == "__init__.py"}
    assert sorted(packages - listed) == [], "add these to [tool.setuptools] packages"
    assert sorted(listed - packages) == [], "pyproject.toml lists packages that do not exist"


#: The size limits of issue 31: lines of a module, and of a function from its ``def`` line to
#: its last line (docstring included; decorators not), nested functions and methods too.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_short():
    # A long module or function is split by what it does (a helper per job, a sibling module),
    # not by where the line count runs out.
    long_modules, long_functions = [], []
    for file in sorted(set(MODULES.values())):
        text = file.read_text()
        where = file.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{where}:{node.lineno}: {node.name} ({lines} lines)")
    assert not long_modules, (f"modules over {MAX_MODULE_LINES} lines:\n"
                              + "\n".join(long_modules))
    assert not long_functions, (f"functions over {MAX_FUNCTION_LINES} lines:\n"
                                + "\n".join(sorted(long_functions)))


#: Lines of code a script in scripts/ may have (its docstring, comments and blank lines aside):
#: an entry point that parses flags and calls the library. mkdocs_hooks.py is the docs site's
#: build hook, loaded by mkdocs from its path (mkdocs.yml), not an entry point.
MAX_SCRIPT_LINES, NOT_ENTRY_POINTS = 15, {"mkdocs_hooks.py"}


def _code_lines(text: str) -> int:
    """Lines of ``text`` that hold code: not blank, not a comment, not the module docstring."""
    tree = ast.parse(text)
    doc = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) else None
    skip = set(range(doc.lineno, doc.end_lineno + 1)) if doc else set()
    return sum(1 for i, line in enumerate(text.splitlines(), 1)
               if i not in skip and line.strip() and not line.strip().startswith("#"))


def test_scripts_are_thin_entry_points():
    # What a script computes lives in qbc/experiments (importable, tested, no prints).
    assert _code_lines('"""doc\nmore"""\n\nimport x  # why\n# note\nx.run()\n') == 2
    long = [f"{p.name}: {_code_lines(p.read_text())} lines"
            for p in sorted((ROOT / "scripts").glob("*.py"))
            if p.name not in NOT_ENTRY_POINTS and _code_lines(p.read_text()) > MAX_SCRIPT_LINES]
    assert not long, f"scripts over {MAX_SCRIPT_LINES} lines of code:\n" + "\n".join(long)
