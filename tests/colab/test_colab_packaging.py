"""The student package against Colab's real runtimes, and the code against Python 3.13.

* attnkit's requirements are ranges that the versions in Colab's published freezes satisfy, it
  declares exactly what it imports, and its wheel holds attnkit alone (no grading, no torchvision).
* pip's own resolver, asked what installing attnkit into each Colab runtime needs (a dry run at that
  runtime's Python, with every other package pinned to Colab's version), answers: attnkit only.
  (Interpreters of Colab's versions are used where found: ``ATTNKIT_PYTHON313``/``ATTNKIT_PYTHON312``
  or ``python3.13``/``python3.12`` on PATH.)
* Every ``.py`` file and every notebook code cell compiles with a Python 3.13 interpreter (Colab's
  default runtime), found as ``python3.13`` on PATH or named by ``ATTNKIT_PYTHON313``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import colab_twin
import pytest
import tomllib
from IPython.core.inputtransformer2 import TransformerManager
from notebook_inventory import ROOT, every_notebook, read, rel
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

HELPERS = ROOT / "helpers"
# Colab's runtimes: freeze file -> its Python (tests/colab/README.md)
RUNTIMES = {
    "pip-freeze-2026-08-19.txt": "3.13.15",
    "pip-freeze-2026.07-fallback.txt": "3.12.13",
}
RUNTIME_IDS = list(RUNTIMES)


def _helpers_project() -> dict:
    return tomllib.loads((HELPERS / "pyproject.toml").read_text())["project"]


def _requirements(extras: bool = True) -> list[Requirement]:
    """attnkit's requirements, and those of its extras (``widgets``: ipywidgets) unless told not to."""
    project = _helpers_project()
    names = list(project["dependencies"])
    if extras:
        names += [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
    return [Requirement(r) for r in names]


def test_ipywidgets_is_an_extra_so_that_pip_never_walks_into_colabs_ipython():
    """Colab leaves out jedi, which IPython 7.34 requires: a requirement on ipywidgets (-> IPython) would
    make pip install jedi into Colab.  The live widgets need ipywidgets, which Colab always has."""
    assert "ipywidgets" not in {r.name for r in _requirements(extras=False)}
    assert "ipywidgets" in {Requirement(r).name for r in _helpers_project()["optional-dependencies"]["widgets"]}


# --------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("freeze", RUNTIME_IDS)
def test_colab_versions_satisfy_every_requirement_of_attnkit(freeze):
    pins = colab_twin.freeze_pins(colab_twin.COLAB / freeze)
    python = RUNTIMES[freeze]
    assert SpecifierSet(_helpers_project()["requires-python"]).contains(python), f"Colab's Python {python}"
    unmet = {str(r): pins.get(colab_twin.canonical(r.name)) for r in _requirements()
             if colab_twin.canonical(r.name) not in pins
             or not r.specifier.contains(Version(pins[colab_twin.canonical(r.name)]), prereleases=True)}
    assert not unmet, f"Colab's versions ({freeze}) do not meet these requirements: {unmet}"
    assert pins["ipywidgets"].startswith("7.7"), "Colab ships ipywidgets 7.7: attnkit must accept it"


def test_attnkit_also_accepts_ipywidgets_8():
    (widgets,) = [r for r in _requirements() if r.name == "ipywidgets"]
    assert widgets.specifier.contains("7.7.1") and widgets.specifier.contains("8.1.5")


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level modules imported by a file: (unguarded, guarded by ``except ImportError``)."""
    tree = ast.parse(path.read_text())
    guarded: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in {"ImportError", "ModuleNotFoundError"} for h in node.handlers
        ):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import):
                        guarded |= {a.name.split(".")[0] for a in sub.names}
                    elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                        guarded.add(sub.module.split(".")[0])
    every: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            every |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            every.add(node.module.split(".")[0])
    return every - guarded, guarded


# Modules attnkit imports that no requirement of its own names: Colab's google.colab (only when it is
# already imported) and IPython (guarded; ipywidgets brings it).
NOT_REQUIRED = {"google", "IPython"}


def test_attnkit_declares_exactly_what_it_imports():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    imported, guarded = set(), set()
    for path in sorted(HELPERS.glob("*.py")):
        unguarded, maybe = _imports(path)
        imported |= unguarded
        guarded |= maybe
    third_party = {m for m in imported | guarded if m not in stdlib and m != "attnkit"}
    declared = {r.name.lower() for r in _requirements()}
    assert declared <= {m.lower() for m in third_party}, f"declared but never imported: {declared - third_party}"
    undeclared = {m for m in third_party if m.lower() not in declared} - NOT_REQUIRED
    assert not undeclared, f"imported but not declared in helpers/pyproject.toml: {undeclared}"
    assert (imported & NOT_REQUIRED) <= {"google"}, "IPython must stay guarded (plain Python has none)"


@pytest.fixture(scope="session")
def attnkit_wheel(tmp_path_factory) -> Path:
    """attnkit's wheel, built from a copy of helpers/ as a clone has it (nothing written into the checkout)."""
    source = tmp_path_factory.mktemp("src") / "helpers"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "helpers"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            target = source.parent / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, target)
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("attnkit-*.whl")
    return wheel


def test_the_student_wheel_is_attnkit_alone(attnkit_wheel):
    names = zipfile.ZipFile(attnkit_wheel).namelist()
    outside = [n for n in names if not n.startswith(("attnkit/", "attnkit-"))]
    assert not outside, f"the student wheel ships more than attnkit: {outside}"
    meta = zipfile.ZipFile(attnkit_wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if Requirement(r).name in {"torchvision", "nbgrader", "jupyterlab"}], requires


def test_the_instructors_project_does_not_ship_attnkit():
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "torchvision" not in {Requirement(r).name for r in root["project"]["dependencies"]}, "nothing imports it"
    find = root["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["grading*"]


# --------------------------------------------------------------------------- pip's answer
def _stub_torch(where: Path, version: str) -> Path:
    """A wheel with no code that says what Colab's torch says about itself (version and requirements):
    PyPI's torch for Linux is the CUDA build, whose requirements Colab's CPU build does not have."""
    where.mkdir(parents=True, exist_ok=True)
    info = f"torch-{version}.dist-info"
    wheel = where / f"torch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        meta = ["Metadata-Version: 2.1", "Name: torch", f"Version: {version}"]
        meta += [f"Requires-Dist: {r}" for r in colab_twin.COLAB_TORCH_REQUIRES]
        z.writestr(f"{info}/METADATA", "\n".join(meta) + "\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return where


def _dry_run(freeze: Path, python: str, wheel: Path, where: Path) -> dict:
    """pip's report of what ``pip install attnkit`` needs at Colab's versions (cached: it asks PyPI for
    the metadata of the packages involved, no downloads).

    pip runs under an interpreter of the runtime's Python version where one is found (environment
    markers are then evaluated as in Colab); otherwise under this one, with ``--python-version`` for
    wheel tags and Requires-Python (markers are then this interpreter's)."""
    pins = colab_twin.freeze_pins(freeze)
    major_minor = ".".join(python.split(".")[:2])
    interpreter = _python(major_minor)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("/METADATA")))
    digest = hashlib.sha256(freeze.read_bytes() + metadata + python.encode() + str(interpreter).encode()
                            + json.dumps(colab_twin.COLAB_TORCH_REQUIRES).encode()).hexdigest()[:16]
    cached = colab_twin.CACHE / f"dry-run-{digest}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    constraints = where / "constraints.txt"
    constraints.write_text(colab_twin.constraints(freeze) + f"torch=={pins['torch']}\n")
    report = where / "report.json"
    runner = ["--python", interpreter] if interpreter else []
    command = [
        sys.executable, "-m", "pip", *runner, "install", "--isolated", "--dry-run", "--ignore-installed", "-q",
        "--report", str(report), "--python-version", major_minor, "--implementation", "cp",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64", "--only-binary", ":all:",
        "--target", str(where / "target"), "--find-links", str(_stub_torch(where / "stub", pins["torch"])),
        "-c", str(constraints), str(wheel),
    ]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, (
        f"pip cannot install attnkit at Colab's versions ({freeze.name}, Python {python}):\n{ran.stderr[-3000:]}"
    )
    data = json.loads(report.read_text())
    result = {"install": {i["metadata"]["name"]: i["metadata"]["version"] for i in data["install"]},
              "markers_of": data["environment"]["python_full_version"]}
    colab_twin.CACHE.mkdir(exist_ok=True)
    (colab_twin.CACHE / ".gitignore").write_text("# the Colab twin's cache (tests/colab_twin.py)\n*\n")
    cached.write_text(json.dumps(result, indent=1))
    return result


@pytest.mark.parametrize("freeze", RUNTIME_IDS)
def test_pip_would_install_attnkit_alone_into_colab(freeze, attnkit_wheel, tmp_path):
    path = colab_twin.COLAB / freeze
    pins = colab_twin.freeze_pins(path)
    resolved = _dry_run(path, RUNTIMES[freeze], attnkit_wheel, tmp_path)
    needs = {colab_twin.canonical(n): v for n, v in resolved["install"].items()}
    new = {n: v for n, v in needs.items() if pins.get(n) != v}
    out = ROOT / "test-artifacts" / "colab-twin"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pip-would-install-{freeze.removesuffix('.txt')}.json").write_text(json.dumps(
        {"python": RUNTIMES[freeze], "markers_evaluated_for_python": resolved["markers_of"],
         "would_install_or_change": new, "already_there": len(needs) - len(new)}, indent=1))
    assert new == {"attnkit": _helpers_project()["version"]}, (
        f"installing attnkit into Colab ({freeze}) would install or change more than attnkit: {new}"
    )


# --------------------------------------------------------------------------- Python 3.13
def _python(version: str) -> str | None:
    """An interpreter of ``version`` ("3.13"): named by ATTNKIT_PYTHON313 (for 3.13), else pythonX.Y on PATH."""
    override = os.environ.get("ATTNKIT_PYTHON" + version.replace(".", ""))
    for candidate in filter(None, [override, shutil.which(f"python{version}")]):
        ran = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        if ran.returncode == 0 and ran.stdout.strip() == version:
            return candidate
    return None


def _sources() -> dict[str, str]:
    """Every .py file of the checkout and every notebook code cell (IPython syntax made Python)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    sources = {name: (ROOT / name).read_text() for name in filter(None, listed)
               if name.endswith(".py") and (ROOT / name).is_file()}
    transform = TransformerManager().transform_cell
    for path in every_notebook():
        for index, cell in enumerate(read(path).cells):
            if cell.cell_type == "code":
                sources[f"{rel(path)}#cell{index}"] = transform(cell.source)
    return sources


def test_every_py_file_and_notebook_cell_compiles_with_python_3_13():
    python = _python("3.13")
    if python is None:
        pytest.skip("no Python 3.13 here: put python3.13 on PATH or set ATTNKIT_PYTHON313=/path/to/python3.13")
    sources = _sources()
    program = (
        "import json, sys, warnings\n"
        "warnings.simplefilter('error', SyntaxWarning)\n"
        "failed = {}\n"
        "for name, source in json.load(sys.stdin).items():\n"
        "    try:\n"
        "        compile(source, name, 'exec')\n"
        "    except (SyntaxError, SyntaxWarning) as e:\n"
        "        failed[name] = f'{type(e).__name__}: {e}'\n"
        "print(json.dumps(failed))\n"
    )
    ran = subprocess.run([python, "-I", "-c", program], input=json.dumps(sources), capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    failed = json.loads(ran.stdout)
    assert not failed, f"Python 3.13 rejects: {failed}"
    assert len(sources) > 50, "the sources were not found"


def test_this_interpreter_is_supported():
    assert (3, 10) <= sys.version_info[:2] <= (3, 13), sysconfig.get_python_version()


def test_attnkit_reports_the_version_it_is_installed_as():
    import attnkit

    assert attnkit.__version__ == _helpers_project()["version"], "helpers/__init__.py and helpers/pyproject.toml"
