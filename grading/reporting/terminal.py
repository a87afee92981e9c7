"""The progress line on a terminal."""

from __future__ import annotations

import sys
import time

from grading.text import clean


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
