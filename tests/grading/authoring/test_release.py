"""notebooks/ is exactly what nbgrader generates from solutions/, and the checks work both ways."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbgrader.validator import Validator

from grading import course
from grading.authoring.release import release
from grading.course import load_config, notebooks

ROOT, NOTEBOOKS, DEMOS = course.root(), course.released(), course.demos()

ALL = notebooks()
IDS = [f"{nb.assignment}/{nb.filename}" for nb in ALL]


def test_there_are_graded_notebooks():
    assert ALL, "solutions/ holds no notebooks"


def test_release_is_in_sync_with_solutions(tmp_path):
    written = release(release_dir=tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_text(encoding="utf-8") for p in written}
    committed = {
        p.relative_to(NOTEBOOKS): p.read_text(encoding="utf-8")
        for p in NOTEBOOKS.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and DEMOS not in p.parents
    }
    stale = sorted(str(p) for p in set(committed) - set(fresh))
    missing = sorted(str(p) for p in set(fresh) - set(committed))
    assert not stale, f"notebooks/ has files that solutions/ no longer produces: {stale}; run `make release`"
    assert not missing, f"notebooks/ lacks generated notebooks {missing}; run `make release`"
    outdated = sorted(str(p) for p in fresh if fresh[p] != committed[p])
    assert not outdated, f"notebooks/ is out of date for {outdated}; run `make release`"


def test_solution_folders_hold_only_notebooks():
    """nbgrader copies every file of solutions/<assignment>/ to the students."""
    extra = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "solutions").rglob("*")
        if p.is_file() and p.suffix != ".ipynb" and ".ipynb_checkpoints" not in p.parts
    ]
    assert not extra, f"only notebooks may live in solutions/: {extra}"


@pytest.mark.parametrize("path", [nb.source for nb in ALL] + [nb.release for nb in ALL],
                         ids=[f"solution:{i}" for i in IDS] + [f"student:{i}" for i in IDS])
def test_committed_notebooks_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    with_outputs = [c.get("id") for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, f"{path.name}: commit notebooks without outputs"
    text = json.dumps(nb)
    for needle in ("/tmp/", "/work/", "/root/", "/home/", ".cuda()"):
        assert needle not in text, f"{path.name} contains {needle!r}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("nb", ALL, ids=IDS)
def test_validator_solution_passes_every_check(nb):
    results = Validator(config=load_config()).validate(str(nb.source))
    assert "failed" not in results, [r["raw_error"][-500:] for r in results.get("failed", [])]
    assert "changed" not in results and "type_changed" not in results, results


@pytest.mark.parametrize("nb", ALL, ids=IDS)
def test_validator_student_version_passes_no_check(nb):
    results = Validator(config=load_config(), invert=True).validate(str(nb.release))
    assert "passed" not in results, [r["source"][:200] for r in results.get("passed", [])]
    assert "changed" not in results and "type_changed" not in results, results
