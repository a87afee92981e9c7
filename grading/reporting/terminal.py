"""Text for a terminal: student-controlled strings made inert, and the progress line."""

from __future__ import annotations

import re
import sys
import time

# every control character but newline and tab (C0, DEL, C1), and whole escape sequences (CSI, OSC, ...)
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|.)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Unicode format characters: bidirectional overrides and isolates, zero-width spaces and joiners, BOM
_FORMAT = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")


def clean(text: object) -> str:
    """``text`` with escape sequences, control characters (newline and tab kept) and invisible Unicode
    format characters (bidirectional overrides, zero-width spaces) removed."""
    return _FORMAT.sub("", _CONTROL.sub("", _ESCAPES.sub("", str(text))))


def one_line(text: object, limit: int = 120) -> str:
    """A student-controlled value to quote inside one line of a report: :func:`clean`, with line breaks
    and tabs as spaces, cut to ``limit`` characters."""
    return re.sub(r"\s+", " ", clean(text)).strip()[:limit]


class Progress:
    """A one-line bar on a terminal; plain lines (every ~10 %) otherwise."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_plain = -1

    def begin(self) -> None:
        if self.enabled and self.total:
            text = f"grading [{'.' * 28}] 0/{self.total}" if self.tty else f"grading: {self.total} submission(s)\n"
            self.stream.write(("\r" if self.tty else "") + text)
            self.stream.flush()

    def update(self, label: str) -> None:
        self.done += 1
        if not self.enabled or not self.total:
            return
        label = clean(label).replace("\n", " ")
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        frac = self.done / self.total
        if self.tty:
            width = 28
            bar = "#" * int(frac * width) + "." * (width - int(frac * width))
            line = f"\rgrading [{bar}] {self.done}/{self.total} {frac:4.0%} {elapsed:5.0f}s eta {eta:4.0f}s  {label[:40]:<40}"
            self.stream.write(line)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            step = max(1, self.total // 10)
            if self.done == self.total or self.done // step != self.last_plain:
                self.last_plain = self.done // step
                self.stream.write(f"grading: {self.done}/{self.total} ({frac:.0%}) {elapsed:.0f}s elapsed, eta {eta:.0f}s; last: {label}\n")
        self.stream.flush()

    def interrupted(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
