"""Intake without kernels: every way a student hands a notebook in maps onto the release.

Runs on every graded notebook (discovered through grading.course) in milliseconds; the
end-to-end runs through real kernels live in test_grading_autograde.py.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from grading import course
from grading.intake.mapping import MAGIC_NOTE, map_submission, parse_script, plain_cell_magic_body
from grading.intake.template import load_template, same_code
from grading.tools import synthetic

ALL = course.notebooks()
IDS = [nb.name for nb in ALL]
NB1 = next(nb for nb in ALL if nb.assignment.startswith("01_"))
SAME_ANSWERS = ("complete", "colab_ipynb", "colab_py", "stripped", "duplicated", "pasted", "reordered")


def template_of(nb):
    return load_template(nb.source, nb.assignment, nb.name)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def same_answer(got: str, want: str, cell_type: str) -> bool:
    if cell_type == "code":  # a .py grades the body of a `%%time` cell, an .ipynb the cell
        return same_code(plain_cell_magic_body(got) or got, plain_cell_magic_body(want) or want)
    return " ".join(got.split()) == " ".join(want.split())


@pytest.mark.parametrize("kind", SAME_ANSWERS)
@pytest.mark.parametrize("nb", ALL, ids=IDS)
def test_every_intake_path_finds_every_answer(nb, kind, tmp_path):
    template = template_of(nb)
    suffix, data = synthetic.submission(nb, kind)
    intake = map_submission(write(tmp_path, f"{nb.name}{suffix}", data), template)
    assert intake.error is None
    solutions = synthetic.solutions(nb)
    if kind.startswith("colab"):  # a Colab student's habits are part of the answers
        solutions = synthetic.with_habits(nb, solutions)
    for part in template.answers:
        assert intake.answered[part.grade_id], f"{kind}: `{part.grade_id}` not found; repairs: {intake.repairs}"
        assert same_answer(intake.answer_source[part.grade_id], solutions[part.grade_id], part.cell_type), (
            f"{kind}: `{part.grade_id}` mapped to\n{intake.answer_source[part.grade_id]}"
        )


@pytest.mark.parametrize("nb", ALL, ids=IDS)
def test_blank_notebook_answers_nothing(nb, tmp_path):
    suffix, data = synthetic.submission(nb, "blank")
    intake = map_submission(write(tmp_path, f"{nb.name}{suffix}", data), template_of(nb))
    assert intake.error is None and intake.repairs == []
    assert not any(intake.answered.values())


@pytest.mark.parametrize("nb", ALL, ids=IDS)
def test_graded_notebook_is_the_source_structure_with_hidden_tests(nb, tmp_path):
    """Locked and test cells come from the source (hidden tests restored), whatever was handed in."""
    template = template_of(nb)
    suffix, data = synthetic.submission(nb, "reordered")
    intake = map_submission(write(tmp_path, f"{nb.name}{suffix}", data), template)
    source = nbformat.read(nb.source, as_version=4)
    assert len(intake.nb.cells) == len(source.cells)
    for graded, original in zip(intake.nb.cells, source.cells):
        gid = original.metadata.get("nbgrader", {}).get("grade_id")
        if gid and template.parts[gid].kind in ("test", "locked"):
            assert graded.source == original.source
    assert any("BEGIN HIDDEN TESTS" in c.source for c in intake.nb.cells)
    assert any("restored" in r for r in intake.repairs) and any("reordered" in r for r in intake.repairs)


def test_unreadable_files_are_clear_errors(tmp_path):
    template = template_of(NB1)
    suffix, data = synthetic.submission(NB1, "invalid_json")
    assert "not valid JSON" in map_submission(write(tmp_path, "a.ipynb", data), template).error
    assert map_submission(write(tmp_path, "b.ipynb", b""), template).error == "empty file"
    assert map_submission(write(tmp_path, "c.ipynb", b"  \n"), template).error == "empty file"
    assert "no cells" in map_submission(write(tmp_path, "d.ipynb", json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []})), template).error
    assert map_submission(write(tmp_path, "e.py", "# only a comment\n"), template).error


def test_wrong_kernel_and_colab_metadata_are_repaired(tmp_path):
    suffix, data = synthetic.submission(NB1, "stripped")
    intake = map_submission(write(tmp_path, "s.ipynb", data), template_of(NB1))
    assert any("kernel `conda-env-attention-py` replaced by `python3`" in r for r in intake.repairs)
    suffix, data = synthetic.submission(NB1, "colab_ipynb")
    assert json.loads(data)["nbformat_minor"] == 0 and "colab" in json.loads(data)["metadata"]
    intake = map_submission(write(tmp_path, "c.ipynb", data), template_of(NB1))
    assert intake.format.startswith("Colab notebook (nbformat 4.0") and intake.repairs == []


def test_duplicated_and_pasted_cells_are_reported(tmp_path):
    template = template_of(NB1)
    first = next(p.grade_id for p in template.answers if p.cell_type == "code")
    _, data = synthetic.submission(NB1, "duplicated")
    repairs = map_submission(write(tmp_path, "d.ipynb", data), template).repairs
    assert any(f"duplicate grade_id `{first}`" in r for r in repairs)
    _, data = synthetic.submission(NB1, "pasted")
    repairs = map_submission(write(tmp_path, "p.ipynb", data), template).repairs
    assert any(f"`{first}`: the answer cell still holds the stub" in r for r in repairs)


def test_helper_in_another_cell_comes_along(tmp_path):
    """An answer that calls a helper the student defined in an extra cell still works."""
    nb = synthetic.filled(NB1, {"batch_scores": "def batch_scores(queries, keys):\n    return _swap_and_multiply(queries, keys)"})
    nb.cells.insert(3, nbformat.v4.new_code_cell("import torch as T\n\ndef _swap_and_multiply(q, k):\n    return T.bmm(q, k.transpose(1, 2))"))
    intake = map_submission(write(tmp_path, "h.ipynb", nbformat.writes(nb)), template_of(NB1))
    source = intake.answer_source["batch_scores"]
    assert "def _swap_and_multiply" in source and "import torch as T" in source
    assert source.index("def _swap_and_multiply") < source.index("def batch_scores")


def test_one_cell_holding_two_answers_is_split(tmp_path):
    """A student who wrote two answers in one new cell (metadata lost) gets each graded separately."""
    sols = synthetic.solutions(NB1)
    nb = synthetic.filled(NB1, {})
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nb.cells.append(nbformat.v4.new_code_cell(sols["masked_softmax"] + "\n\n\n" + sols["batch_scores"]))
    intake = map_submission(write(tmp_path, "two.ipynb", nbformat.writes(nb)), template_of(NB1))
    assert same_code(intake.answer_source["masked_softmax"], sols["masked_softmax"])
    assert same_code(intake.answer_source["batch_scores"], sols["batch_scores"])
    assert not intake.answered["DotProductAttention"]


COLAB_PY = '''# -*- coding: utf-8 -*-
"""scoring_functions.ipynb

Automatically generated by Colab.

Original file is located at
    https://colab.research.google.com/drive/1abc
"""

!pip install -q something
import os
if "google.colab" in os.environ.get("X", ""):
    # %pip install -q "{INSTALL_SPEC}"

"""## Markdown with LaTeX: $\\underbrace{x}$ and \\N{oops}"""

def masked_softmax(X, valid_lens):
    return broken(

def batch_scores(queries, keys):
    """queries: (batch, n, d), keys: (batch, m, d)"""
    return torch.bmm(queries, keys.transpose(1, 2))

matmul_shape = (2, 3, 5)
bmm_accepts_2d = False
'''


def test_colab_py_with_magics_latex_and_a_syntax_error(tmp_path):
    """Shell lines, a commented magic alone in a block, LaTeX escapes that are not valid Python
    strings, and one answer that does not parse: only that answer is lost."""
    script = parse_script(COLAB_PY)
    assert script.notes  # the fallback was used and said so
    intake = map_submission(write(tmp_path, "scoring_functions.py", COLAB_PY), template_of(NB1))
    assert intake.error is None and intake.format == "Colab .py download"
    assert "broken(" in intake.answer_source["masked_softmax"]
    assert any("syntax error" in r and "masked_softmax" in r for r in intake.repairs)
    assert intake.answered["batch_scores"] and "torch.bmm" in intake.answer_source["batch_scores"]
    assert intake.answered["bmm_vs_matmul"] and "matmul_shape = (2, 3, 5)" in intake.answer_source["bmm_vs_matmul"]
    assert not intake.answered["DotProductAttention"]


def test_submitted_file_is_never_written(tmp_path):
    _, data = synthetic.submission(NB1, "stripped")
    path = write(tmp_path, "x.ipynb", data)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    map_submission(path, template_of(NB1))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# Colab's real "Download .py": the note above a cell with magics, each magic as `# ` + its line at
# column 0 (an indented %pip leaves an empty block), a %%time cell commented out line by line.
REAL_COLAB_PY = '''# -*- coding: utf-8 -*-
"""scoring_functions.ipynb

Automatically generated by Colaboratory.

Original file is located at
    https://colab.research.google.com/drive/1abc

# Attention scoring functions
"""

# Commented out IPython magic to ensure Python compatibility.
import os
if "google.colab" in os.environ.get("X", ""):
#     %pip install -q "{INSTALL_SPEC}"

# %matplotlib inline
import torch

"""## Masked softmax"""

# Commented out IPython magic to ensure Python compatibility.
# %%time
# def masked_softmax(X, valid_lens):
#     """Softmax over the last axis."""
# 
#     return torch.softmax(X, dim=-1)

!pip install -q torchinfo
def batch_scores(queries, keys):
    return torch.bmm(queries, keys.transpose(1, 2))

# %timeit batch_scores(torch.ones(1, 2, 3), torch.ones(1, 4, 3))

# Commented out IPython magic to ensure Python compatibility.
# %%capture
# !pip install -q torchinfo
# %pip install -q einops

# Commented out IPython magic to ensure Python compatibility.
# %%bash
# echo "not Python"

matmul_shape = (2, 3, 5)
bmm_accepts_2d = False
'''


def test_colab_real_py_restores_what_colab_commented_out(tmp_path):
    """Colab's own format parses without the syntax-error fallback; the %%time answer is found; the
    student's own commented-out %timeit (no note above its cell) stays a comment."""
    script = parse_script(REAL_COLAB_PY)
    assert not any("syntax errors" in n for n in script.notes), script.notes
    assert [m for _, m in script.restored] == ['%pip install -q "{INSTALL_SPEC}"', "%matplotlib inline", "%%time", "%%capture", "%%bash"]
    assert "get_ipython().system('pip install -q torchinfo')" in script.lines  # inside %%capture, as IPython runs it
    assert "get_ipython().run_line_magic('pip', 'install -q einops')" in script.lines
    intake = map_submission(write(tmp_path, "scoring_functions.py", REAL_COLAB_PY), template_of(NB1))
    assert intake.error is None and intake.format == "Colab .py download"
    assert intake.answered["masked_softmax"] and "return torch.softmax(X, dim=-1)" in intake.answer_source["masked_softmax"]
    assert "%%time" not in intake.answer_source["masked_softmax"]
    assert intake.answered["batch_scores"] and any(x.startswith("# %timeit batch_scores(") for x in script.lines)  # a comment still
    assert intake.answered["bmm_vs_matmul"]
    assert any("`%%time`" in n and "Colab had commented out" in n for n in intake.neutralised), intake.neutralised
    assert not any("%pip" in n for n in intake.neutralised)  # the course's own setup cell is not the student's habit


@pytest.mark.parametrize("header", ["Colab", "Colaboratory", None])
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_every_colab_py_header_and_line_ending_is_read(header, crlf, tmp_path):
    notebook = synthetic.filled(NB1, synthetic.with_habits(NB1, synthetic.solutions(NB1)))
    text = synthetic.to_colab_py(notebook, NB1.name, header=header, crlf=crlf)
    assert ("\r\n" in text) == crlf
    intake = map_submission(write(tmp_path, "scoring_functions.py", text), template_of(NB1))
    assert intake.error is None and intake.format == "Colab .py download"
    assert all(intake.answered.values()), intake.repairs
    assert not any("syntax errors" in r for r in intake.repairs), intake.repairs


def test_a_time_cell_without_metadata_is_matched_by_its_body(tmp_path):
    answers = {gid: ("%%time\n" + src if gid == "batch_scores" else src) for gid, src in synthetic.solutions(NB1).items()}
    notebook = synthetic.filled(NB1, answers)
    for cell in notebook.cells:
        cell.metadata.pop("nbgrader", None)
    intake = map_submission(write(tmp_path, "x.ipynb", nbformat.writes(notebook)), template_of(NB1))
    assert intake.answered["batch_scores"] and intake.answer_source["batch_scores"].startswith("%%time\n")


def test_a_vs_code_cell_marker_after_colab_note_is_not_a_cell_magic():
    """`# %%` (a comment in the student's cell, so Colab left it alone) must not be taken for `%%time`;
    a cell magic after the student's own comment lines (Colab writes them `# # ...`) still is."""
    text = ('"""x.ipynb\n\nOriginal file is located at\n    https://colab.research.google.com/drive/1\n"""\n\n'
            f"{MAGIC_NOTE}\n# %%\n# %matplotlib inline\nx = 1\n\n"
            f"{MAGIC_NOTE}\n# # timing\n# %%time\n# y = 2\n")
    script = parse_script(text)
    assert [m for _, m in script.restored] == ["%matplotlib inline", "%%time"]
    assert "y = 2" in script.lines and "x = 1" in script.lines


def test_colab_ipynb_is_laid_out_as_colab_saves_it():
    data = json.loads(synthetic.submission(NB1, "colab_ipynb")[1])
    assert list(data) == ["nbformat", "nbformat_minor", "metadata", "cells"] and data["nbformat_minor"] == 0
    assert data["metadata"]["kernelspec"] == {"name": "python3", "display_name": "Python 3"} and "colab" in data["metadata"]
    for cell in data["cells"]:
        assert "id" not in cell and cell["metadata"]["id"] and isinstance(cell["source"], list)
    sources = ["".join(c["source"]) for c in data["cells"] if c["cell_type"] == "code"]
    assert any(s.startswith(("%matplotlib inline", "%%time", "!pip")) for s in sources)  # a Colab student's habits


def test_cells_of_megabytes_are_refused_with_their_size(tmp_path):
    template = template_of(NB1)
    nb = nbformat.reads(synthetic.submission(NB1, "complete")[1].decode(), as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "masked_softmax")
    nb.cells[index].source += "\n# " + "+" * 1_200_000
    error = map_submission(write(tmp_path, "a.ipynb", nbformat.writes(nb)), template).error
    assert error == (f"cell {index + 1} holds {len(nb.cells[index].source):,} characters, more than the 1,000,000 a cell may have: "
                     "not graded (remove what is not your answer and hand it in again)")
    nb.cells[index].source = nb.cells[index].source[:900_000]
    for cell in nb.cells[index + 1:index + 5]:
        cell.source += "\n# " + "+" * 900_000
    assert "together, more than the 4,000,000" in map_submission(write(tmp_path, "b.ipynb", nbformat.writes(nb)), template).error
    assert "more than the 4,000,000 a submission" in map_submission(write(tmp_path, "c.py", "# " + "+" * 4_100_000 + "\n"), template).error


def test_an_answer_of_megabytes_in_a_script_is_refused(tmp_path):
    """A fourth outside tester's Colab .py: one answer held a 3.5 MB string, under the script's 4,000,000 in all."""
    from nbconvert import PythonExporter

    template = template_of(NB1)
    nb = nbformat.reads(synthetic.submission(NB1, "complete")[1].decode(), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "masked_softmax")
    cell.source += "\n_padding = '" + "x" * 1_500_000 + "'\n"
    script, _ = PythonExporter().from_notebook_node(nb)
    error = map_submission(write(tmp_path, "a.py", script), template).error
    assert error and error.startswith("the answer `masked_softmax` holds 1,5") and "more than the 1,000,000" in error, error
