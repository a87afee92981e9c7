"""The share of the project's wrong answers that a *visible* check catches, before hand-in.

Every wrong answer listed in tests/notebooks/test_notebook0*.py (``WRONG_ANSWERS``) runs through its check
cell twice: as students see it (hidden tests removed) and as graded.  A wrong answer must always
lose its points when graded; it must also fail visibly, unless it is listed in that module's
``HIDDEN_ON_PURPOSE`` with the reason a visible check would give the answer away.  The share of
wrong answers caught visibly must stay at or above 90 %; ``python -m pytest tests/notebooks/test_visible_catch.py -s``
prints it.
"""

from __future__ import annotations

import pytest
import test_notebook01 as nb01
import test_notebook02 as nb02
import test_notebook03 as nb03
from harness import check_verdict, load

pytestmark = pytest.mark.slow  # runs every wrong answer twice (about two minutes)

MODULES = {
    "solutions/01_scoring_functions/scoring_functions.ipynb": nb01,
    "solutions/02_scoring_exercises/scoring_exercises.ipynb": nb02,
    "solutions/03_understanding_attention/understanding_attention.ipynb": nb03,
}
CASES = [(path, *case) for path, module in MODULES.items() for case in module.WRONG_ANSWERS]
HIDDEN_ON_PURPOSE = {label: why for module in MODULES.values() for label, why in module.HIDDEN_ON_PURPOSE.items()}


@pytest.fixture(scope="module")
def verdicts():
    notebooks = {path: load(path) for path in MODULES}
    out = {}
    for path, _answer, check, label, replace in CASES:
        nb = notebooks[path]
        out[label] = (check_verdict(nb, replace, check, visible_only=True), check_verdict(nb, replace, check))
    return out


def test_every_hidden_on_purpose_entry_is_a_known_wrong_answer():
    labels = [case[3] for case in CASES]
    assert len(labels) == len(set(labels)), "wrong-answer labels must be unique across notebooks"
    assert set(HIDDEN_ON_PURPOSE) <= set(labels)


def test_every_wrong_answer_loses_its_points_when_graded(verdicts):
    accepted = [label for label, (_, graded) in verdicts.items() if graded is None]
    assert not accepted, accepted


def test_wrong_answers_fail_visibly_unless_hidden_on_purpose(verdicts):
    slipped = [label for label, (visible, _) in verdicts.items() if visible is None and label not in HIDDEN_ON_PURPOSE]
    assert not slipped, f"wrong answers that pass every visible check: {slipped}"
    stale = [label for label in HIDDEN_ON_PURPOSE if verdicts[label][0] is not None]
    assert not stale, f"listed as hidden on purpose but caught visibly: {stale}"


def test_visible_messages_are_words_not_reference_values(verdicts):
    for label, (visible, _) in verdicts.items():
        if visible is not None:
            assert "tensor(" not in visible, (label, visible)
            assert "expected" in visible or "not answered yet" in visible, (label, visible)


def test_share_caught_visibly_is_at_least_90_percent(verdicts):
    caught = sum(visible is not None for visible, _ in verdicts.values())
    total = len(verdicts)
    print(f"\nwrong answers caught by a visible check: {caught} of {total} ({caught / total:.1%})")
    for label in HIDDEN_ON_PURPOSE:
        print(f"  hidden on purpose: {label}: {HIDDEN_ON_PURPOSE[label]}")
    assert caught / total >= 0.9
