"""Text that students chose (names, outputs, messages), made inert for a terminal or a text report.

Used by every stage that prints or writes such text: collect's lines, the report, the grades table,
the progress line.
"""

from __future__ import annotations

import re

# every control character but newline and tab (C0, DEL, C1), and whole escape sequences (CSI, OSC, ...)
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|.)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Unicode format characters: bidirectional overrides and isolates, zero-width spaces and joiners, BOM
_FORMAT = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")


def clean(text: object) -> str:
    """``text`` with escape sequences, control characters (newline and tab kept) and invisible Unicode
    format characters (bidirectional overrides, zero-width spaces) removed."""
    return _FORMAT.sub("", _CONTROL.sub("", _ESCAPES.sub("", str(text))))


def line(text: object) -> str:
    """:func:`clean`, with every line break and tab as a space: a name chosen by a student (an uploaded
    file's) cannot start a line of its own, and the line's own spacing is kept."""
    return re.sub(r"[\n\t\v\f\u2028\u2029]+", " ", clean(text))


def one_line(text: object, limit: int = 120) -> str:
    """A student-controlled value to quote inside one line of a report: :func:`clean`, with line breaks
    and tabs as spaces, cut to ``limit`` characters."""
    return re.sub(r"\s+", " ", clean(text)).strip()[:limit]
