"""Every knob of grading and its default, defined once.

:class:`Limits` bounds one submission's sandbox, :class:`GradeOptions` is everything a worker needs
to grade one submission (picklable: it travels to worker processes and Dask workers), and
:class:`ExitCode` is what ``python -m grading`` returns.  The command line, the demo, the benchmark
and the tests all take their defaults from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

GIB = 1024**3
MIB = 1024**2


class ExitCode(enum.IntEnum):
    OK = 0  # the command did its job (autograde: also when some submissions are broken; they are reported)
    FAILED = 1  # the command ran but its result is wrong (the demo's self-check, a failed release)
    USAGE = 2  # bad usage: unknown ids, a file that is not a gradebook or a zip, a missing folder
    INFRASTRUCTURE = 3  # the sandbox or the kernel cannot start, an unusable gradebook: nothing was graded
    INTERRUPTED = 130  # Ctrl-C: finished results are kept, the same command resumes


@dataclass(frozen=True)
class Limits:
    """What one submission may use; enforced by :mod:`grading.execution.sandbox`."""

    memory_bytes: int = 2 * GIB  # the submission's process tree (cgroup) and each process (RLIMIT_DATA)
    cpu_seconds: int = 600  # CPU time of the submission (RLIMIT_CPU)
    max_processes: int = 64  # processes and threads in the sandbox (pids cgroup, else RLIMIT_NPROC)
    max_open_files: int = 256
    max_file_bytes: int = 256 * MIB  # largest file it may write
    scratch_bytes: int = 256 * MIB  # its private working folder, /tmp and /dev/shm (each a tmpfs)


@dataclass(frozen=True)
class GradeOptions:
    """How one submission is graded.  ``repr`` is part of a result's fingerprint (resume)."""

    cell_timeout: float = 120.0  # seconds per cell (and per segment of a test cell)
    notebook_timeout: float = 600.0  # seconds for the whole submission: intake and every cell
    intake_timeout: float = 30.0  # seconds to read and map the submission (within notebook_timeout)
    startup_timeout: float = 120.0  # seconds for a worker's sandbox to start
    interrupt_grace: float = 5.0  # seconds an interrupted cell has to stop before its sandbox is killed
    threads: int = 1  # OMP/MKL threads per submission (parallel workers share the cores)
    sandbox: bool = True  # False: no bubblewrap, students' code runs as the grader's user (--no-sandbox)
    limits: Limits = field(default_factory=Limits)
    reply_bytes: int = 64 * MIB  # largest value one call may send back to the grader
    cell_reply_bytes: int = 256 * MIB  # all values one grade cell may fetch
    # What a measured call (attnkit.peak_memory) reads and writes that is not the answer's: decoding its
    # arguments, the interpreter, the reply (measured: 8.1 to 8.7 MiB for the solution and its alternatives).
    touched_allowance: int = 12 * MIB
    # Reading more than this from storage (not from memory) is flagged: every library a notebook uses is in
    # memory after the worker's warm-up, and passing data between submissions through the page cache takes
    # one read from storage per bit at each end.
    disk_read_flag: int = 4 * MIB


DEFAULT = GradeOptions()
