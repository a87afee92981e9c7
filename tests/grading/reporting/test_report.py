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
