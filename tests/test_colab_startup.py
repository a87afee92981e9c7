"""The Colab start-up path, tested without Colab, and the Colab badges.

Every notebook's first code cell installs the helpers when ``google.colab`` is imported.  Here a
stand-in ``google.colab`` module is imported at kernel start (as in Colab), ``ATTNKIT_INSTALL``
points the install at a wheel built from this checkout, and each notebook runs in a fresh kernel
of a fresh virtual environment in which ``import attnkit`` fails until the first cell has run.

The heavy dependencies (torch, matplotlib, ipykernel, pip ...) are not downloaded again: the
fresh environment sees a copy of the project's site-packages made of symbolic links, *minus the
project itself*.  pip runs with ``PIP_NO_INDEX=1``: the install must succeed from the wheel alone,
with every dependency already satisfied, and it must not touch the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbgrader import utils as nbutils

from notebook_inventory import (
    COLAB_BADGE,
    ROOT,
    course_repo,
    demos,
    every_notebook,
    first_code_cell,
    graded,
    public_path,
    pyproject,
    read,
    rel,
    startup_block,
    unexpected_errors,
)

ALL = every_notebook()
ALL_IDS = [rel(p) for p in ALL]
KERNEL = "colab-stand-in"
PROJECT_ENTRIES = ("attnkit", "grading", "attention_course_kit", "__editable__")


# --------------------------------------------------------------------------- badges and COURSE_REPO
def _repository() -> str:
    urls = pyproject()["project"].get("urls", {})
    assert "Repository" in urls, (
        'pyproject.toml needs [project.urls] Repository = "https://github.com/<owner>/<repo>": '
        "the Colab badges and COURSE_REPO are checked against it"
    )
    return urls["Repository"].rstrip("/")


def test_there_are_notebooks_and_a_demo():
    assert graded(), "solutions/ holds no notebooks"
    assert demos(), "notebooks/00_demo/attention_explorer.ipynb (the ungraded demo) is missing"


@pytest.mark.parametrize("path", ALL, ids=ALL_IDS)
def test_colab_badge_opens_this_notebook(path):
    repository = _repository()
    assert repository.startswith("https://github.com/"), repository
    owner_repo = repository.removeprefix("https://github.com/")
    first = read(path).cells[0]
    assert first.cell_type == "markdown", f"{rel(path)}: the first cell must be markdown with the Colab badge"
    expected = f"https://colab.research.google.com/github/{owner_repo}/blob/main/{public_path(path)}"
    badge = f"[![Open In Colab]({COLAB_BADGE})]({expected})"
    assert first.source.splitlines()[0] == badge, (
        f"{rel(path)}: the first line must be the Colab badge for this notebook's own path:\n  {badge}\n"
        f"got:\n  {first.source.splitlines()[0]}"
    )


@pytest.mark.parametrize("path", ALL, ids=ALL_IDS)
def test_course_repo_matches_pyproject(path):
    source = first_code_cell(read(path)).source
    assert course_repo(source) == _repository(), f"{rel(path)}: COURSE_REPO differs from pyproject's Repository"
    name = pyproject()["project"]["name"]
    assert f'f"{name} @ git+{{COURSE_REPO}}"' in source, f"{rel(path)}: INSTALL_SPEC must install {name!r}"


def test_every_notebook_starts_with_the_same_startup_block():
    blocks = {rel(p): startup_block(first_code_cell(read(p)).source) for p in ALL}
    reference = blocks[rel(ALL[0])]
    differ = [p for p, block in blocks.items() if block != reference]
    assert not differ, f"these start-up cells differ from {rel(ALL[0])}'s: {differ}"
    assert 'if "google.colab" in sys.modules and "NBGRADER_EXECUTION" not in os.environ:' in reference
    assert "import attnkit" in first_code_cell(read(ALL[0])).source


# --------------------------------------------------------------------------- the fresh environment
@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout (tracked and untracked, not ignored files: what a clone would have)."""
    src = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    dist = tmp_path_factory.mktemp("dist")
    # Offline with the setuptools we have; Python 3.12 venvs have none, and pip then fetches it.
    isolation = [] if importlib.util.find_spec("setuptools") else ["--use-pep517"]
    no_isolation = [] if isolation else ["--no-build-isolation"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *no_isolation, *isolation, "-w", str(dist), str(src)],
        capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert built.returncode == 0, f"building a wheel of the checkout failed:\n{built.stderr[-3000:]}"
    (wheel_path,) = dist.glob("attention_course_kit-*.whl")
    return wheel_path


def make_colab_like_venv(root: Path) -> Path:
    """A fresh venv without the project, whose kernel imports a stand-in google.colab at start."""
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The project's dependencies, without the project: symbolic links to everything else.
    shared = root / "shared-site-packages"
    shared.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if entry.name.startswith(PROJECT_ENTRIES) or entry.suffix == ".pth":
            continue
        (shared / entry.name).symlink_to(entry)
    (site / "_course_dependencies.pth").write_text(f"{shared}\n")
    # google.colab stand-in: a namespace package `google` (it may share the name with others).
    stub = root / "colab-stand-in" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (tests only)."""\n__stand_in__ = True\n')
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # Colab imports it before any cell runs\n")
    return python


def kernel_manager(root: Path, python: Path, wheel: Path) -> KernelManager:
    kernels = root / "kernels"
    spec = kernels / KERNEL
    spec.mkdir(parents=True)
    env = {
        "PYTHONPATH": str(root / "colab-stand-in"),
        "IPYTHONDIR": str(root / "ipython"),
        "ATTNKIT_INSTALL": f"attention-course-kit @ {wheel.as_uri()}",
        "PIP_NO_INDEX": "1",  # every dependency must already be there; no network
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",  # as in Colab, not the tests' Agg
    }
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python", "env": env,
    }))
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))


PROBE_BEFORE = (
    "import importlib.util, sys\n"
    "print('PROBE-BEFORE', 'google.colab' in sys.modules, importlib.util.find_spec('attnkit') is None)"
)
PROBE_AFTER = "import attnkit\nprint('PROBE-AFTER', attnkit.__file__.startswith(sys.prefix), sys.prefix)"


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def run_like_colab(path: Path, root: Path, wheel: Path, monkeypatch) -> nbformat.NotebookNode:
    python = make_colab_like_venv(root)
    check = subprocess.run([python, "-c", "import attnkit"], capture_output=True, text=True)
    assert check.returncode != 0 and "No module named 'attnkit'" in check.stderr, (
        "the fresh environment must not see attnkit before the start-up cell has run"
    )
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("ATTNKIT_DEVICE", raising=False)
    nb = read(path)
    startup = nb.cells.index(first_code_cell(nb))
    nb.cells.insert(startup, nbformat.v4.new_code_cell(PROBE_BEFORE))
    nb.cells.insert(startup + 2, nbformat.v4.new_code_cell(PROBE_AFTER))
    workdir = root / "work"
    workdir.mkdir()
    client = NotebookClient(nb, km=kernel_manager(root, python, wheel), timeout=600, allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    before, setup, after = nb.cells[startup : startup + 3]
    assert "PROBE-BEFORE True True" in _text(before), (
        f"before the first cell google.colab must be imported and attnkit missing; got {_text(before)!r}"
    )
    errors = [f"{o.ename}: {o.evalue}" for o in setup.outputs if o.output_type == "error"]
    assert not errors, f"{rel(path)}: the start-up cell failed in the Colab stand-in: {errors}\n{_text(setup)}"
    assert "PROBE-AFTER True" in _text(after), (
        f"after the start-up cell attnkit must be installed in the fresh environment; got {_text(after)!r} "
        f"{[o for o in after.outputs if o.output_type == 'error']}"
    )
    del nb.cells[startup + 2], nb.cells[startup]
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("nb", graded(), ids=[f"{n.assignment}/{n.filename}" for n in graded()])
def test_solution_runs_after_the_colab_startup_cell(nb, tmp_path, wheel, monkeypatch):
    start = time.perf_counter()
    executed = run_like_colab(nb.source, tmp_path, wheel, monkeypatch)
    errors = [
        f"{c.metadata.get('nbgrader', {}).get('grade_id') or c.source.splitlines()[0][:60]}: {o.ename}: {o.evalue}"
        for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, f"{rel(nb.source)} in the Colab stand-in: {errors}"
    checks = [c for c in executed.cells if c.cell_type == "code" and nbutils.is_grade(c)]
    assert all(c.execution_count for c in checks), "every check cell must have run"
    print(f"{rel(nb.source)}: {time.perf_counter() - start:.1f}s in the Colab stand-in")


@pytest.mark.slow
@pytest.mark.parametrize("path", demos(), ids=[rel(p) for p in demos()])
def test_demo_runs_after_the_colab_startup_cell(path, tmp_path, wheel, monkeypatch):
    executed = run_like_colab(path, tmp_path, wheel, monkeypatch)
    assert not unexpected_errors(executed)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{o.ename}: {o.evalue}" for o in errors]
    shown = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    assert shown and all("image/png" in o.data for o in shown if "application/vnd.jupyter.widget-view+json" in o.data)
