"""The layout is the design: stages without import circles, and a trust seam that is a package boundary.

* no import circles anywhere in ``grading/`` or ``helpers/`` (every import counts, at module
  level or inside a function);
* ``grading/sandboxed/`` (the only code that runs inside the sandbox, next to students' code)
  imports nothing else of ``grading``, and the trusted side reaches it only through its protocol;
* the README's architecture section names every sub-package and module that exists, and only those.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"grading": ROOT / "grading", "attnkit": ROOT / "helpers"}


def _modules() -> dict[str, Path]:
    found = {}
    for name, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([name, *parts])] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports (``from x import y`` counts y when y is a module)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            names = submodules + ([base] if len(submodules) < len(node.names) else [])
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_there_are_no_import_circles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt in ("grading", "attnkit") and node.startswith(nxt + "."):
                continue  # a package's __init__ runs before its modules anyway; checked below
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_package_inits_import_nothing_that_imports_them_back():
    for package in ("grading", "attnkit"):
        for dep in GRAPH[package]:
            assert package not in GRAPH.get(dep, set()), f"{package}/__init__ imports {dep}, which imports {package}"


def test_sandboxed_code_imports_nothing_else_of_grading():
    for module, deps in GRAPH.items():
        if module.startswith("grading.sandboxed"):
            outside = {d for d in deps if d.startswith("grading") and not d.startswith("grading.sandboxed")}
            assert not outside, f"{module} runs inside the sandbox but imports {sorted(outside)}"


def test_only_the_trusted_client_and_sandbox_know_the_runner():
    users = {m for m, deps in GRAPH.items() if any(d.startswith("grading.sandboxed") for d in deps) and not m.startswith("grading.sandboxed")}
    assert users <= {"grading.execution.client"}, users


def test_stages_depend_only_downwards():
    """intake and execution know nothing of scoring, reporting or the class; reporting knows nothing of execution."""
    order = {"grading.options": 0, "grading.text": 0, "grading.model": 1, "grading.course": 1, "grading.intake": 2, "grading.execution": 3,
             "grading.scoring": 4, "grading.submission": 5, "grading.store": 6, "grading.workers": 6, "grading.reporting": 6, "grading.pipeline": 7}

    def layer(module: str) -> int | None:
        for prefix, level in order.items():
            if module == prefix or module.startswith(prefix + "."):
                return level
        return None

    for module, deps in GRAPH.items():
        mine = layer(module)
        if mine is None:
            continue
        for dep in deps:
            theirs = layer(dep)
            if theirs is not None and not dep.startswith("grading.sandboxed"):
                assert theirs <= mine, f"{module} (stage {mine}) imports {dep} (stage {theirs})"


def test_the_readme_architecture_matches_the_code():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"grading/[a-z_/]+(?:\.py)?", section))
    actual = {"grading/" + str(p.relative_to(ROOT / "grading")).replace("\\", "/") for p in (ROOT / "grading").rglob("*.py")
              if p.name != "__init__.py" and "__pycache__" not in p.parts}
    actual |= {"grading/" + p.name + "/" for p in (ROOT / "grading").iterdir() if p.is_dir() and p.name != "__pycache__"}
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `grading/")}

    def mentioned(path: str) -> bool:
        folder, _, name = path.rpartition("/")
        return path in named or (folder + "/" in rows and f"`{name}`" in rows[folder + "/"])

    missing = sorted(a for a in actual if not mentioned(a) and a not in {"grading/__main__.py"})
    stale = sorted(n for n in named if n not in actual and n + "/" not in actual and n.rstrip("/") + "/" not in actual)
    assert not missing, f"the README's architecture section does not mention {missing}"
    assert not stale, f"the README's architecture section names what does not exist: {stale}"

