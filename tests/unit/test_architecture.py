"""The import graph: layers import downwards only, no circles, mlflow only in the tracking package, NumPy
only in the numerics, and no import hidden inside a function unless a comment says why it is deferred."""

import ast
import sys
from pathlib import Path

import pytest

from ..helpers import REPO

# What each part of netsweep may import of netsweep's own (besides itself).
ALLOWED = {
    "src.errors": set(),
    "src.outcomes": set(),
    "src.scratch": set(),
    "src.interrupts": {"src.errors"},
    "src.nn": set(),
    "src.plots": set(),
    "src.pruning": set(),
    "src.config": {"src.errors", "src.nn"},
    "src.data": {"src.errors", "src.nn", "src.scratch"},  # a Dataset's rows are what the numerics take (src/nn/rows.py)
    "src.tracking": {"src.errors", "src.outcomes", "src.interrupts"},
    "src.experiment": {
        "src.config",
        "src.data",
        "src.nn",
        "src.plots",
        "src.pruning",
        "src.tracking",
        "src.errors",
        "src.outcomes",
        "src.interrupts",  # the training loop stops at a step when its worker's process is ending
    },
    "src.report": {"src.tracking", "src.config", "src.plots", "src.errors", "src.outcomes"},
    "src.sweep": {
        "src.experiment",
        "src.report",
        "src.tracking",
        "src.config",
        "src.data",
        "src.errors",
        "src.outcomes",
        "src.interrupts",
        "src.pruning",
        "src.scratch",
    },
    "src.cli": {"src.config", "src.errors", "src.nn"},
    "src.predict": {"src.tracking", "src.errors"},
    "src.run": {"src.cli", "src.config", "src.experiment", "src.sweep", "src.tracking", "src.interrupts", "src.errors"},
    "hydra_plugins": {"src.sweep"},
}
STDLIB = set(sys.stdlib_module_names)


def _modules():
    for root in ("src", "hydra_plugins"):
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _part(module: str) -> str:
    """The entry of ALLOWED a module belongs to."""
    for prefix in sorted(ALLOWED, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    raise AssertionError(f"{module} belongs to no layer: add it to ALLOWED")


def _imports(tree: ast.AST, module: str):
    """(imported module, line number, inside a function?) for every import statement."""
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in inside
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if _is_module(candidate) else base), node.lineno, id(node) in inside


def _is_module(name: str) -> bool:
    path = REPO / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


NN_LIBRARIES = ("numpy", "src", "array_api_compat")  # a GPU library is imported only where asked for (inside)
GRAPH = {}
PROBLEMS = []
for _module, _path in _modules():
    _source = _path.read_text()
    _lines = _source.splitlines()
    GRAPH[_module] = set()
    for _name, _line, _inside in _imports(ast.parse(_source), _module):
        _top = _name.split(".")[0]
        if _top in ("src", "hydra_plugins"):
            GRAPH[_module].add(_name)
            if _part(_name) != _part(_module) and _part(_name) not in ALLOWED[_part(_module)]:
                PROBLEMS.append(f"{_path.name}:{_line}: {_part(_module)} must not import {_name}")
        if _top == "mlflow" and not _module.startswith("src.tracking"):
            PROBLEMS.append(f"{_path.name}:{_line}: imports mlflow outside src/tracking")
        if _module.startswith("src.nn") and _top not in NN_LIBRARIES and _top not in STDLIB and not _inside:
            PROBLEMS.append(f"{_path.name}:{_line}: src/nn imports {_name}; it uses NumPy and the array API only")
        if (
            _inside
            and "deferred" not in _lines[_line - 1]
            and "deferred" not in _lines[_line - 2]
            and "noqa: F401" not in _lines[_line - 1]
        ):
            PROBLEMS.append(
                f"{_path.name}:{_line}: imports {_name} inside a function without saying why "
                "(a comment with 'deferred: ...')"
            )


def test_layers_import_downwards_only_and_mlflow_stays_in_tracking():
    assert PROBLEMS == []


def test_there_are_no_import_circles():
    state: dict = {}
    cycles = []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(GRAPH.get(node, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_every_package_says_what_it_owns_in_one_sentence():
    for init in [*(REPO / "src").rglob("__init__.py"), *(REPO / "hydra_plugins").rglob("__init__.py")]:
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring, f"{init} has no docstring"
        assert "\n\n" not in docstring and docstring.count(". ") == 0 and docstring.endswith("."), init


def _body_lines(function: ast.AST) -> int:
    """Lines of a function's code, its signature and docstring left out."""
    body = function.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    return function.end_lineno - body[0].lineno + 1


@pytest.mark.parametrize("module,path", list(_modules()))
def test_functions_fit_on_a_screen(module, path):
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({_body_lines(node)} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > 40
    ]
    assert long == []


def _trees():
    for module, path in _modules():
        yield module, path, ast.parse(path.read_text())


# Leading-underscore names that are public API of what they belong to (namedtuples, os).
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_exit"}


def _private_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """`obj._name` where obj is not the object itself (self, cls, super()) nor a class of this module."""
    own = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__") or node.attr in PUBLIC_UNDERSCORED:
            continue
        value = node.value
        if isinstance(value, ast.Name) and (value.id in ("self", "cls") or value.id in own):
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            continue
        found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_private_attribute_is_read_from_outside_its_object():
    """What an object keeps to itself stays inside it: nobody reads `other._name` (the seams say what is
    shared, src/tracking/api.py, src/sweep's app interface, src/nn/optim.py's optimizer)."""
    problems = [
        f"{path.relative_to(REPO)}:{line}: reads {text}"
        for _, path, tree in _trees()
        for line, text in _private_reads(tree)
    ]
    assert problems == []


def test_no_function_takes_more_than_six_parameters():
    """Data that travels between functions has a name (a dataclass), not seven positional arguments."""
    problems = []
    for _, path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                named = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
                count = len([n for n in named if n not in ("self", "cls")])
                if count > 6:
                    problems.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.name} takes {count}")
    assert problems == []


def test_no_passthrough_wrappers_or_probed_hooks():
    """No `__getattr__` that hides what a wrapper depends on, and no hasattr probing for optional hooks."""
    problems = []
    for _, path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                problems.append(f"{path.relative_to(REPO)}:{node.lineno}: __getattr__ passthrough")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
                problems.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert problems == []
