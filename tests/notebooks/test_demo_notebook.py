"""The ungraded lecture demo (notebooks/00_demo): committed clean, outside nbgrader, and readable
without a widget front end (its outputs carry a PNG that static HTML shows)."""

from __future__ import annotations

import base64
import json

import nbformat
import pytest
from nbconvert import HTMLExporter
from notebook_inventory import ROOT, demos, graded, read, rel

from attnkit.explorer import explore
from grading import course

DEMOS = demos()


def test_the_demo_is_ungraded_and_known_to_grading():
    assert DEMOS, "notebooks/00_demo/attention_explorer.ipynb is missing"
    demo_dir = course.demos()
    for path in DEMOS:
        assert path.parent == demo_dir, f"{rel(path)}: ungraded notebooks belong in {rel(demo_dir)}"
        assert not (ROOT / "solutions" / path.parent.name).exists(), "a demo has no solution source"
    assert demo_dir.name not in {nb.assignment for nb in graded()}


@pytest.mark.parametrize("path", DEMOS, ids=[rel(p) for p in DEMOS])
def test_demo_is_committed_clean(path):
    nb = read(path)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{rel(path)}: commit without outputs (cells {dirty})"
    assert "widgets" not in nb.metadata, "commit without saved widget state"
    text = json.dumps(nb)
    for needle in ("/tmp/", "/work/", "/root/", "/home/", ".cuda()"):
        assert needle not in text, f"{rel(path)} contains {needle!r}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert not any("nbgrader" in c.metadata for c in nb.cells), "the demo is not an nbgrader notebook"
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "explore(" in sources and "selection_vs_averaging(" in sources


def _html(outputs) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("explore()")
    cell.outputs = outputs
    cell.execution_count = 1
    nb.cells.append(cell)
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def test_static_html_of_a_live_explorer_shows_its_png():
    """nbconvert, nbgrader feedback and other static viewers have no widget state: they get the PNG."""
    ex = explore(interactive=True)
    bundle = ex._repr_mimebundle_()
    data = {**bundle, "image/png": base64.b64encode(bundle["image/png"]).decode()}  # as a kernel sends it
    output = nbformat.v4.new_output("execute_result", data=data, execution_count=1)
    body = _html([output])
    assert 'src="data:image/png;base64,' in body


def test_static_html_of_the_fallback_figure_shows_a_png():
    fig = explore(interactive=False)
    output = nbformat.v4.new_output(
        "execute_result", data={"image/png": base64.b64encode(fig._repr_png_()).decode(), "text/plain": "fig"},
        execution_count=1,
    )
    assert 'src="data:image/png;base64,' in _html([output])
