"""Every graded cell has a human title that the grader can show instead of its grade id.

Convention (read it with ``harness.question_title``):

* an autograded check cell starts with the line ``# Check: <title>``;
* a manually graded written answer follows a prompt cell that starts with ``**Written answer: <title>**``.
"""

from __future__ import annotations

import pytest
from harness import grade_id, load, question_title
from notebook_inventory import graded, rel

NOTEBOOKS = [rel(nb.source) for nb in graded()] + [rel(nb.release) for nb in graded()]


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_every_graded_cell_has_a_title(path):
    nb = load(path)
    titles = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            titles[grade_id(cell)] = question_title(nb, grade_id(cell))
    assert titles, f"{path}: no graded cells"
    assert all(t and not t.startswith("test_") and t != gid for gid, t in titles.items()), titles
    assert len(set(titles.values())) == len(titles), f"{path}: titles must be distinct: {titles}"


def test_titles_read_as_expected():
    nb = load("solutions/01_scoring_functions/scoring_functions.ipynb")
    assert question_title(nb, "test_masked_softmax") == "Masked softmax"
    assert question_title(nb, "why_scale_answer") == "the dropped term and the scale"
    with pytest.raises(KeyError):
        question_title(nb, "no_such_cell")
