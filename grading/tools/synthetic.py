"""A synthetic class, generated from the released notebooks and the solutions (never committed).

Used by ``make demo``, the tests and (later) the benchmark.  Each *kind* of student hands in every
graded notebook in one way; :func:`make_class` writes them in nbgrader's layout
``DEST/<student_id>/<assignment>/<notebook>.ipynb|.py``.  Everything is derived from the course
with no per-notebook code: answers are the solution cells with nbgrader's solution delimiters
removed, stubs are the released cells.

Kinds (see :data:`KINDS`): ``complete``, ``blank``, ``partial`` (every other answer solved, the
rest left as stubs), ``colab_ipynb`` (Colab's "Download .ipynb": nbformat 4.0, ids in ``metadata.id``,
``colab`` metadata, outputs), ``colab_py`` (Colab's "Download .py", in Colab's real format: magics
commented out, header of either era, CRLF for some students) (both Colab kinds carry students' habits
in their answers, see :data:`HABITS`: ``%matplotlib inline``, ``%%time``, ``drive.mount``, ``!pip``,
``%timeit``, ``display``, ``plt.show()``, ``%%capture``, an indented ``%pip``), ``stripped`` (no nbgrader metadata, another kernel
name), ``duplicated`` (an answer cell and a test cell duplicated, the stub kept in the first copy),
``pasted`` (the answer pasted in a new cell below the untouched stub), ``reordered`` (answers moved,
a test cell edited, another deleted, an extra cell), ``syntax_error`` (one answer does not parse),
``crash`` (an answer kills its kernel with ``os._exit``), ``timeout`` (an answer sleeps for an hour),
``hang`` (an answer ignores SIGINT and loops), ``invalid_json`` (a truncated file), ``empty``.
"""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

from grading import course
from grading.intake.template import Template, load_template

KINDS = (
    "complete", "blank", "partial", "colab_ipynb", "colab_py", "stripped", "duplicated", "pasted",
    "reordered", "syntax_error", "crash", "timeout", "hang", "invalid_json", "empty",
)
DEMO_KINDS = ("complete", "blank", "partial", "colab_ipynb", "colab_py", "stripped", "duplicated", "crash", "invalid_json")

_DELIMITER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solutions(nb: course.Notebook) -> dict[str, str]:
    """grade_id -> the solution a student would write (delimiter lines removed)."""
    source = nbformat.read(nb.source, as_version=4)
    answers = {}
    for cell in source.cells:
        if nbutils.is_solution(cell):
            lines = [line for line in cell.source.splitlines() if not _DELIMITER.match(line)]
            answers[_gid(cell)] = "\n".join(lines).strip("\n")
    return answers


def filled(nb: course.Notebook, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The released notebook with some answer cells replaced."""
    release = nbformat.read(nb.release, as_version=4)
    for cell in release.cells:
        gid = _gid(cell)
        if gid in answers:
            cell.source = answers[gid]
    return release


def _template(nb: course.Notebook) -> Template:
    return load_template(nb.source, nb.assignment, nb.name)


def _code_answers(nb: course.Notebook) -> list[str]:
    return [p.grade_id for p in _template(nb).answers if p.cell_type == "code"]


def _index(notebook: nbformat.NotebookNode, gid: str) -> int:
    return next(i for i, c in enumerate(notebook.cells) if _gid(c) == gid)


def _middle_answer(nb: course.Notebook) -> str:
    answers = _code_answers(nb)
    return answers[len(answers) // 2]


def to_colab_ipynb(notebook: nbformat.NotebookNode, name: str, seed: int = 0) -> str:
    """Colab's File > Download > .ipynb: nbformat 4.0 with the top-level keys in Colab's order, no
    cell ids but ``metadata.id``, sources as lists of lines, ``colab`` metadata, outputs of a run."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    cells = []
    count = 0
    for cell in notebook.cells:
        if cell.cell_type not in ("markdown", "code"):
            continue
        metadata = {"id": "".join(rng.choice(alphabet) for _ in range(12)), **copy.deepcopy(dict(cell.metadata))}
        out = {"cell_type": cell.cell_type, "source": cell.source.splitlines(keepends=True), "metadata": metadata}
        if cell.cell_type == "code":
            count += 1
            metadata["colab"] = {"base_uri": "https://localhost:8080/"}
            metadata["outputId"] = f"{rng.getrandbits(128):032x}"[:8] + "-0000-0000-0000-000000000000"
            out["execution_count"] = count
            out["outputs"] = ([{"output_type": "stream", "name": "stdout", "text": ["torch 2.5.1+cu121 | device: cuda | seed: 0\n"]}]
                              if count == 1 else [])
        cells.append(out)
    nb = {
        "nbformat": 4,
        "nbformat_minor": 0,
        "metadata": {
            "colab": {"provenance": [], "gpuType": "T4"},
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "language_info": {"name": "python"},
            "accelerator": "GPU",
        },
        "cells": cells,
    }
    return json.dumps(nb, indent=2, ensure_ascii=False) + "\n"


# Students' ordinary habits in Colab, as they write them into their answer cells.  Each must keep
# its points; the Colab kinds carry them (:func:`with_habits`), tests/colab/test_colab_habits.py one by one.
HABITS = {
    "matplotlib_inline": lambda a: "%matplotlib inline\n" + a,
    "cell_time": lambda a: "%%time\n" + a,
    "drive": lambda a: "from google.colab import drive, files\ndrive.mount('/content/drive')\n\n" + a,
    "pip": lambda a: "!pip install -q torchinfo\n" + a,
    "timeit": lambda a: a + "\n\n%timeit sum(range(1000))",
    "display": lambda a: a + "\n\ndisplay('answer ready')",
    "plt_show": lambda a: a + "\n\nplt.plot([0, 1], [1, 0])\nplt.title('a quick look')\nplt.show()",
    "capture": lambda a: "%%capture\n" + a,
    "pip_in_block": lambda a: "try:\n    import torchinfo\nexcept ImportError:\n    %pip install -q torchinfo\n\n" + a,
    "config_inline": lambda a: "%config InlineBackend.figure_format = 'retina'\n" + a,
    "pip_subprocess": lambda a: "import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'torchinfo'])\n\n" + a,
}


def with_habits(nb: course.Notebook, answers: dict[str, str], seed: int = 0, habits=None) -> dict[str, str]:
    """``answers`` with one habit in each code answer, the habits taken in turn from ``seed``."""
    names = list(habits or HABITS)
    out = dict(answers)
    for k, gid in enumerate(_code_answers(nb)):
        if gid in out:
            out[gid] = HABITS[names[(seed + k) % len(names)]](out[gid])
    return out


COLAB_NOTE = "# Commented out IPython magic to ensure Python compatibility."


def _colab_code(source: str) -> str:
    """A code cell as Colab's .py writes it: a cell magic comments the whole cell out line by line;
    otherwise each line magic becomes ``# `` + the line at column 0; ``!cmd`` lines stay as written;
    either way the cell starts with Colab's note."""
    lines = source.split("\n")
    head = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    if head.startswith("%%"):
        return "\n".join([COLAB_NOTE] + [f"# {line}" for line in lines])
    if any(re.match(r"\s*%[A-Za-z_]", line) for line in lines):
        return "\n".join([COLAB_NOTE] + [f"# {line}" if re.match(r"\s*%[A-Za-z_]", line) else line for line in lines])
    return source


def to_colab_py(notebook: nbformat.NotebookNode, name: str, header: str | None = "Colab", crlf: bool = False,
                address: str = "https://colab.research.google.com/drive/1x2YZsyntheticCLASSxxxxxxxxxxxxxx") -> str:
    """Colab's File > Download > .py, as Colab writes it.

    A coding line; a docstring with the notebook's name, "Automatically generated by Colab." (since
    2024; ``header="Colaboratory"`` for the older "... by Colaboratory.", ``None`` for neither),
    "Original file is located at" and the address, then the leading markdown cells; each further
    markdown cell as a ``\"\"\"...\"\"\"`` string; code cells with their magics commented out as Colab
    does it (:func:`_colab_code`); cells joined by one blank line; ``crlf`` for Windows line endings.
    """
    cells = [c for c in notebook.cells if c.cell_type in ("markdown", "code")]
    lead = []
    i = 0
    while i < len(cells) and cells[i].cell_type == "markdown":
        lead.append(cells[i].source)
        i += 1
    generated = f"Automatically generated by {header}.\n\n" if header else ""
    parts = [
        "# -*- coding: utf-8 -*-\n"
        f'"""{name}.ipynb\n\n{generated}Original file is located at\n    {address}\n'
        + ("\n" + "\n\n".join(lead) + "\n" if lead else "")
        + '"""'
    ]
    for cell in cells[i:]:
        if cell.cell_type == "markdown":
            text = cell.source
            parts.append(f'"""{text}"""' if "\n" not in text else f'"""{text}\n"""')
        else:
            parts.append(_colab_code(cell.source))
    text = "\n\n".join(parts) + "\n"
    return text.replace("\n", "\r\n") if crlf else text


def submission(nb: course.Notebook, kind: str, seed: int = 0, overrides: dict[str, str] | None = None) -> tuple[str, bytes]:
    """(file suffix, content) of one student's ``nb`` handed in as ``kind``.

    ``overrides`` maps answer grade_ids to other answers (wrong or alternative ones) on top of
    the complete notebook.
    """
    sols = solutions(nb)
    answers = {**sols, **(overrides or {})}
    if kind == "blank":
        return ".ipynb", nbformat.writes(nbformat.read(nb.release, as_version=4)).encode()
    if kind == "partial":
        ordered = [p.grade_id for p in _template(nb).answers]
        keep = {gid: answers[gid] for k, gid in enumerate(ordered) if k % 2 == 0}
        return ".ipynb", nbformat.writes(filled(nb, keep)).encode()
    if kind == "empty":
        return ".ipynb", b""
    if kind in ("crash", "timeout", "hang", "syntax_error"):
        gid = _middle_answer(nb)
        poison = {
            "crash": "import os\nos._exit(1)\n",
            "timeout": "import time\ntime.sleep(3600)\n",
            "hang": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n",
        }
        if kind == "syntax_error":
            answers[gid] = answers[gid] + "\n)  # a stray parenthesis\n"
        else:
            answers[gid] = poison[kind] + answers[gid]
        return ".ipynb", nbformat.writes(filled(nb, answers)).encode()
    notebook = filled(nb, answers)
    if kind == "complete":
        return ".ipynb", nbformat.writes(notebook).encode()
    if kind == "invalid_json":
        text = nbformat.writes(notebook)
        return ".ipynb", text[: len(text) // 2].encode()
    if kind == "colab_ipynb":
        return ".ipynb", to_colab_ipynb(filled(nb, with_habits(nb, answers, seed)), nb.name, seed).encode()
    if kind == "colab_py":  # the header of 2024 on, or of before (Colaboratory); Windows line endings for some
        header = "Colab" if seed % 2 == 0 else "Colaboratory"
        return ".py", to_colab_py(filled(nb, with_habits(nb, answers, seed)), nb.name, header=header, crlf=seed % 3 == 2).encode()
    if kind == "stripped":
        for cell in notebook.cells:
            cell.metadata.pop("nbgrader", None)
            cell.metadata.pop("deletable", None)
            cell.metadata.pop("editable", None)
        notebook.metadata["kernelspec"] = {"name": "conda-env-attention-py", "display_name": "Python [conda env:attention]", "language": "python"}
        return ".ipynb", nbformat.writes(notebook).encode()
    if kind == "duplicated":
        gid = _code_answers(nb)[0]
        i = _index(notebook, gid)
        copy_cell = copy.deepcopy(notebook.cells[i])
        copy_cell.id = f"dup-{i}"
        stub = nbformat.read(nb.release, as_version=4).cells[i].source
        notebook.cells[i].source = stub  # the first copy keeps the stub, the second holds the answer
        notebook.cells.insert(i + 1, copy_cell)
        tests = [c for c in notebook.cells if nbutils.is_grade(c) and not nbutils.is_solution(c)]
        if tests:
            j = notebook.cells.index(tests[-1])
            dup = copy.deepcopy(tests[-1])
            dup.id = f"dup-{j}"
            notebook.cells.insert(j + 1, dup)
        return ".ipynb", nbformat.writes(notebook).encode()
    if kind == "pasted":
        gid = _code_answers(nb)[0]
        i = _index(notebook, gid)
        answer = notebook.cells[i].source
        notebook.cells[i].source = nbformat.read(nb.release, as_version=4).cells[i].source
        notebook.cells.insert(i + 1, nbformat.v4.new_code_cell(answer))
        return ".ipynb", nbformat.writes(notebook).encode()
    if kind == "reordered":
        code = _code_answers(nb)
        last = notebook.cells.pop(_index(notebook, code[-1]))
        notebook.cells.insert(1, last)  # the last answer moved to the top
        tests = [c for c in notebook.cells if nbutils.is_grade(c) and not nbutils.is_solution(c)]
        if tests:
            tests[0].source = "pass  # the student emptied this check"
        if len(tests) > 1:
            notebook.cells.remove(tests[1])
        notebook.cells.append(nbformat.v4.new_code_cell("print('scratch work')"))
        return ".ipynb", nbformat.writes(notebook).encode()
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def make_class(dest: Path, kinds=DEMO_KINDS, notebooks: list[course.Notebook] | None = None,
               overrides: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """Write one student per kind (``s01_complete``, ...) handing in every notebook.

    ``kinds`` may also be a mapping student_id -> kind; ``overrides`` maps a student id to the
    answers (grade_id -> source) that replace the solutions for that student.
    Returns student_id -> kind.
    """
    dest = Path(dest)
    students = dict(kinds) if isinstance(kinds, dict) else {f"s{i + 1:02d}_{k}": k for i, k in enumerate(kinds)}
    for n, (sid, kind) in enumerate(students.items()):
        for nb in notebooks or course.notebooks():
            mine = {gid: src for gid, src in (overrides or {}).get(sid, {}).items() if gid in {p.grade_id for p in _template(nb).answers}}
            suffix, data = submission(nb, kind, seed=n, overrides=mine)
            path = dest / sid / nb.assignment / f"{nb.name}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return students


FULL_MARKS = ("complete", "colab_ipynb", "colab_py", "stripped", "duplicated", "pasted", "reordered")


def unexpected(kind: str, result) -> str | None:
    """Why ``result`` (a SubmissionResult) is not what a student of ``kind`` must get, or None."""
    auto = [q for q in result.questions if q.graded_by == "auto"]
    score = sum(q.score or 0 for q in auto)
    full = sum(q.max_score for q in auto)
    errors = [q for q in result.questions if q.status == "error"]
    if kind in FULL_MARKS:
        if result.error or errors or score != full:
            return f"expected full marks ({full:g}), got {score:g} with {len(errors)} error row(s) {result.error or ''}".strip()
        if any(q.status != "manual" for q in result.questions if q.graded_by == "manual"):
            return "expected the written answers to await a human"
    elif kind == "blank":
        if score != 0 or any(q.score for q in result.questions):
            return f"expected 0 everywhere, got {score:g}"
    elif kind in ("partial", "syntax_error", "timeout"):
        if not 0 < score < full:
            return f"expected a partial score, got {score:g}/{full:g}"
    elif kind in ("crash", "hang"):
        if not errors or score >= full:
            return f"expected error rows after the {kind} and a partial score, got {score:g}/{full:g}"
    elif kind in ("invalid_json", "empty"):
        if not result.error or len(errors) != len(result.questions):
            return "expected an unreadable submission with every row an error"
    return None
