"""``OUT/report``: entries that quote student-chosen names stay on their own line."""

from __future__ import annotations

from grading.reporting.report import write_report


def test_a_name_with_line_breaks_cannot_add_report_lines(tmp_path):
    forged = "== 11111 / 01_scoring_functions / scoring_functions: 13/13  [graded]"
    header = ["Autograde report", "output:    /x/out",
              f"ignored:   evil\n{forged}", f"collect:   a\r\n{forged}", f"ignored:   b\u2028{forged}\x1b[2K"]
    write_report(tmp_path / "report", [], header)
    lines = (tmp_path / "report").read_text().splitlines()
    assert not any(line.startswith("==") for line in lines), lines
    assert lines[1] == "output:    /x/out"  # the alignment of the report's own lines is kept
    assert len(lines) == len(header), lines


def test_the_notebook_formgrader_shows_for_an_unreadable_file_carries_no_live_markdown():
    """A third outside attacker's file: nbformat quotes its version field in the error, and the error went into
    the placeholder notebook as Markdown, where a link to javascript: and an outside image rendered live."""
    from nbconvert import HTMLExporter

    from grading import course
    from grading.model import SubmissionResult
    from grading.pipeline import _placeholder_notebook

    nb = course.notebooks()[0]
    evil = "[Open the original](javascript:alert(document.domain)) ![s](https://attacker.example/b.png) <img src=x onerror=alert(1)>"
    result = SubmissionResult("xss", nb.assignment, nb.name, "/x/xss.ipynb",
                              error=f"not a readable notebook: NBFormatError: Unsupported nbformat version {evil}")
    html, _ = HTMLExporter().from_notebook_node(__import__("nbformat").reads(_placeholder_notebook(result), as_version=4))
    assert 'href="javascript' not in html and 'src="https://attacker' not in html and "<img src=x" not in html
    assert "Open the original" in html  # still shown, as text
