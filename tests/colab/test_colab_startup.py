"""The Colab start-up cell and the Colab badges, checked without Colab.

Every notebook's first code cell installs the student package attnkit (``helpers/``) when
``google.colab`` is there.  Here: the badges, COURSE_REPO, one identical start-up block everywhere,
plain Python that survives Colab's ``.py`` download, what a failed install says, and that nothing
is installed outside Colab.  Running every notebook through that cell in a twin of Colab's runtime
(Colab's package versions, a stand-in ``google.colab``) is ``tests/colab/test_colab_twin.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
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
)

ALL = every_notebook()
ALL_IDS = [rel(p) for p in ALL]


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
    assert 'f"attnkit @ git+{COURSE_REPO}#subdirectory=helpers"' in source, (
        f"{rel(path)}: INSTALL_SPEC must install the student package attnkit (helpers/) alone"
    )
    assert 'os.environ.get("ATTNKIT_INSTALL", ' in source, f"{rel(path)}: ATTNKIT_INSTALL must override the install"


def test_helpers_declare_the_same_repository():
    helpers = tomllib.loads((ROOT / "helpers" / "pyproject.toml").read_text())
    assert helpers["project"]["urls"]["Repository"].rstrip("/") == _repository()


def _startup_block(source: str) -> str:
    """The set-up cell up to its first ``import attnkit``: identical in every notebook."""
    head, sep, _ = source.partition("\nimport math\n")
    if not sep:
        head, sep, _ = source.partition("\nimport attnkit\n")
    assert sep, "the start-up cell imports neither math nor attnkit"
    return head


def test_every_notebook_starts_with_the_same_startup_block():
    blocks = {rel(p): _startup_block(first_code_cell(read(p)).source) for p in ALL}
    reference = blocks[rel(ALL[0])]
    differ = [p for p, block in blocks.items() if block.strip() != reference.strip()]
    assert not differ, f"these start-up cells differ from {rel(ALL[0])}'s: {differ}"
    assert 'and "NBGRADER_EXECUTION" not in os.environ' in reference
    assert "import attnkit" in first_code_cell(read(ALL[0])).source


def colab_py(source: str) -> str:
    """A code cell as Colab's File > Download > .py writes it: each magic line commented out at column 0,
    under one header line."""
    lines = source.splitlines()
    magic = [i for i, line in enumerate(lines) if line.lstrip().startswith(("%", "!"))]
    if not magic:
        return source
    out = ["# Commented out IPython magic to ensure Python compatibility."]
    out += ["# " + line if i in magic else line for i, line in enumerate(lines)]
    return "\n".join(out)


@pytest.mark.parametrize("path", ALL, ids=ALL_IDS)
def test_startup_cell_is_plain_python_that_survives_colabs_py_download(path):
    """No magic in the set-up cell: Colab's .py download comments magics out at column 0, and one inside
    an ``if`` would leave an empty block (a SyntaxError in the .py a student hands in)."""
    source = first_code_cell(read(path)).source
    assert not [line for line in source.splitlines() if line.lstrip().startswith(("%", "!"))], (
        f"{rel(path)}: the set-up cell must be plain Python (install with subprocess, not %pip)"
    )
    compile(colab_py(source), rel(path), "exec")
    # and the converter above is Colab's: an indented magic alone in a block breaks the .py
    with pytest.raises(SyntaxError):
        compile(colab_py('if True:\n    %pip install -q "x"\n'), "colab.py", "exec")


def _startup_only(path: Path) -> str:
    source = first_code_cell(read(path)).source
    return _startup_block(source)


@pytest.mark.parametrize("colab", ["imported", "importable"])
def test_a_failed_install_says_what_happened_and_what_to_do(tmp_path, colab):
    """pip fails (here: no such package, no index; in Colab: no network, a wrong fork): the cell stops with
    a message in words, not with ModuleNotFoundError on the next line.  The install (ATTNKIT_INSTALL's
    requirement) is tried where google.colab is imported, as in Colab, and wherever it is importable."""
    stand_in = tmp_path / "stand-in" / "google" / "colab"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("")
    program = (
        "import sys\n"
        + ("import google.colab  # Colab imports it at kernel start\n" if colab == "imported" else "")
        +
        "sys.modules['attnkit'] = None  # hide this checkout's attnkit: find_spec('attnkit') is then None\n"
        + _startup_only(ALL[0])
        + "\nimport attnkit\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "stand-in"),
        "ATTNKIT_INSTALL": f"attnkit @ {(tmp_path / 'no-such-folder').as_uri()}",
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.pop("NBGRADER_EXECUTION", None)
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode != 0
    assert "Installing the course helpers" in ran.stdout
    assert "RuntimeError: The course helpers (attnkit) could not be installed" in ran.stderr, ran.stderr[-2000:]
    assert "run this cell again" in ran.stderr
    assert "ModuleNotFoundError" not in ran.stderr


def test_outside_colab_the_startup_block_installs_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
    program = "import subprocess\nsubprocess.run = None  # any install attempt would fail loudly\n" + _startup_only(ALL[0])
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
