"""Imports go only downward, module by module; shared geometry lives at the bottom.

Two rules, read from the source (every ``import`` statement, those inside functions included):

- packages are ranked (errors and constants at the bottom, the scripts of ``wsi/bin`` at the top) and no module
  imports a package of its own rank or above;
- the modules form no import circle: an import hidden inside a function still makes two modules depend on each
  other, and the next change that moves it to the top fails at import time.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RANKS = {"wsi.errors": 0, "wsi.constants": 0, "wsi.fileio": 1, "wsi.geometry": 1, "wsi.orientation": 1,
         "wsi.device": 1,
         "wsi.arrays": 2, "wsi.cli": 2, "wsi.config": 2, "wsi.data": 3, "wsi.model": 3, "wsi.synthetic": 4,
         "wsi.inference": 4, "wsi.eval": 4, "wsi.train": 4, "wsi.bin": 5}


def _rank(module):
    for prefix in sorted(RANKS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, RANKS[prefix]
    return module, None


def module_files(root, package="wsi"):
    """``{module name: path}`` of every ``.py`` file of ``package`` under ``root`` (``__init__`` → the package)."""
    return {".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
            for path in sorted((root / package).rglob("*.py"))}


def imported_modules(module, path, modules):
    """The modules of ``modules`` that ``module`` (file ``path``) imports, anywhere in the file.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``; relative imports are
    resolved against ``module``'s package.
    """
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {name for name in found if name in modules and name != module}


def import_graph(root, package="wsi"):
    """``{module: set of modules it imports}`` for the package under ``root``."""
    modules = module_files(root, package)
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def import_circles(graph):
    """The import circles of ``graph``: each a sorted list of the modules that reach one another (Tarjan)."""
    index, low, on_stack, stack, circles = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_packages_import_only_downward():
    upward = []
    for module, targets in sorted(import_graph(ROOT).items()):
        home, rank = _rank(module)
        for name in sorted(targets):
            target, target_rank = _rank(name)
            if target != home and target_rank is not None and rank is not None and target_rank >= rank:
                upward.append(f"{module} imports {name}")
    assert upward == []


def test_no_module_is_in_an_import_circle():
    assert import_circles(import_graph(ROOT)) == []


def test_a_circle_hidden_inside_a_function_is_found(tmp_path):
    # The check itself: two modules of a package that import each other, one of them only inside a function (as
    # grid_augment and image_producer once did), and a third importing one of them, which is no circle.
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("from pkg.sub.b import thing\n")
    (package / "sub" / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("import pkg.sub.a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.sub.a"} and graph["pkg.c"] == {"pkg.sub.a"}
    assert import_circles(graph) == [["pkg.sub.a", "pkg.sub.b"]]
    (package / "sub" / "b.py").write_text("def thing():\n    return 1\n")
    assert import_circles(import_graph(tmp_path, "pkg")) == []


@pytest.mark.parametrize("module", ["wsi.geometry", "wsi.arrays", "wsi.data.wsi_producer", "wsi.model.checkpoint",
                                    "wsi.inference.runner", "wsi.data.hard_negatives"])
def test_each_module_imports_alone(module):
    # A fresh interpreter per module: an import cycle hidden by the import order elsewhere shows up here.
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
