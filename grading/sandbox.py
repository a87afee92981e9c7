"""Run an untrusted command (a student's kernel) in a bubblewrap sandbox with resource limits.

What the sandboxed process sees and may do:

* no network (its own, empty network namespace);
* the system read-only; its own /tmp, /dev and /proc (PID namespace: it sees only itself);
* an empty home directory and an empty repository root, except the read-only pieces a
  notebook legitimately needs (the virtual environment and the helpers package) — so no
  solutions/, no gradebook, no other submissions, no grading output;
* one private writable scratch directory (its working directory);
* limits: memory (RLIMIT_DATA per process, and a memory cgroup for the whole tree where
  cgroups are writable), CPU seconds (RLIMIT_CPU), number of processes (a pids cgroup
  where available, else RLIMIT_NPROC), open files, and the file size it may write.

Wall-clock limits per cell and per notebook belong to the caller (it owns the clock and
kills the whole sandbox with :meth:`Sandbox.kill`).

Where bubblewrap is missing (macOS, Windows, a container without user namespaces)
:func:`check_available` says why, and the grader refuses to run unless the instructor
passes ``--no-sandbox`` explicitly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from grading.course import ROOT

GIB = 1024**3
CGROUP_ROOT = Path("/sys/fs/cgroup")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be built on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 2 * GIB
    cpu_seconds: int = 300  # CPU time for the whole notebook (all its processes' own limit)
    max_processes: int = 64
    max_open_files: int = 256
    max_file_bytes: int = 256 * 1024**2


def _interpreter_roots() -> list[Path]:
    """Folders the sandbox must see for Python to start: the venv and its base interpreter."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent}
    return sorted(roots)


def check_available() -> None:
    """Raise :class:`SandboxUnavailable` with a clear reason when bubblewrap cannot be used."""
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(
            f"sandboxing needs Linux with bubblewrap; this is {sys.platform}. Grade on a Linux machine, "
            "or pass --no-sandbox to run students' code unconfined as your own user (not recommended)."
        )
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: `sudo apt-get install bubblewrap` (Debian/Ubuntu) or "
            "`sudo dnf install bubblewrap`; or pass --no-sandbox to run students' code unconfined."
        )
    probe = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap is installed but cannot create namespaces here ({probe.stderr.strip()}); "
            "enable unprivileged user namespaces or run as root, or pass --no-sandbox."
        )


def _cgroup_dir(controller: str) -> Path | None:
    """A writable cgroup-v1 controller folder, or None (then rlimits alone apply)."""
    base = CGROUP_ROOT / controller
    if base.is_dir() and os.access(base, os.W_OK):
        return base
    return None


@dataclass
class Sandbox:
    """One sandbox for one submission. ``wrap(argv)`` returns the command line to start."""

    scratch: Path
    limits: Limits = field(default_factory=Limits)
    hidden: tuple[Path, ...] = ()
    name: str = field(default_factory=lambda: f"attnkit-{uuid.uuid4().hex[:12]}")
    _cgroups: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scratch = Path(self.scratch).resolve()
        self.scratch.mkdir(parents=True, exist_ok=True)
        os.chmod(self.scratch, 0o777)  # the sandboxed user (nobody) writes here

    def _make_cgroups(self) -> list[Path]:
        made = []
        settings = {
            "pids": {"pids.max": str(self.limits.max_processes)},
            "memory": {"memory.limit_in_bytes": str(self.limits.memory_bytes), "memory.swappiness": "0"},
        }
        for controller, values in settings.items():
            base = _cgroup_dir(controller)
            if base is None:
                continue
            group = base / self.name
            try:
                group.mkdir(exist_ok=True)
                for key, value in values.items():
                    if (group / key).exists():
                        (group / key).write_text(value)
            except OSError:
                continue
            made.append(group)
        return made

    def wrap(self, argv: list[str]) -> list[str]:
        """The sandboxed command line for ``argv`` (bwrap + prlimit, joined to the cgroups)."""
        home = Path.home().resolve()
        args = [
            "bwrap",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--tmpfs", str(home),
            "--tmpfs", str(ROOT),
        ]
        for hidden in self.hidden:
            hidden = Path(hidden).resolve()
            if hidden.exists() and hidden != self.scratch and self.scratch not in hidden.parents:
                args += ["--tmpfs", str(hidden)]
        # Put back, read-only, what a notebook legitimately needs.
        needed = _interpreter_roots() + [ROOT / "helpers", Path(__file__).with_name("runner.py")]
        for path in needed:
            if path.exists() and (home in path.parents or ROOT in path.parents or path in (home, ROOT)):
                args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(self.scratch), str(self.scratch)]
        # The empty stand-ins are read-only too (after the binds, which need to create mount
        # points in them): writing anywhere but scratch and the private /tmp fails.
        for mount in [home, ROOT, *(Path(h).resolve() for h in self.hidden)]:
            if ["--tmpfs", str(mount)] in [args[i : i + 2] for i in range(len(args) - 1)]:
                args += ["--remount-ro", str(mount)]
        args += [
            "--chdir", str(self.scratch),
            "--setenv", "HOME", str(self.scratch),
            "--setenv", "TMPDIR", "/tmp",
            "--setenv", "MPLCONFIGDIR", str(self.scratch / ".mpl"),
            "--unshare-all",  # network, PID, IPC, UTS, cgroup and user namespaces
            "--uid", "65534", "--gid", "65534",
            "--die-with-parent",
            "--new-session",  # no access to the grader's terminal
            "--",
            "prlimit",
            f"--data={self.limits.memory_bytes}",
            f"--cpu={self.limits.cpu_seconds}",
            f"--nproc={self.limits.max_processes}",
            f"--nofile={self.limits.max_open_files}",
            f"--fsize={self.limits.max_file_bytes}",
            "--core=0",
            "--",
            *argv,
        ]
        self._cgroups = self._make_cgroups()
        if not self._cgroups:
            return args
        # Join the cgroups before exec, so that every descendant is counted from the start.
        join = " && ".join(f'echo $$ > "{g}/cgroup.procs"' for g in self._cgroups)
        return ["/bin/sh", "-c", f'{join} && exec "$@"', "sandbox", *args]

    def cleanup(self) -> None:
        """Kill anything left in the sandbox's cgroups and remove them."""
        for group in self._cgroups:
            procs = group / "cgroup.procs"
            try:
                for pid in procs.read_text().split():
                    try:
                        os.kill(int(pid), 9)
                    except ProcessLookupError:
                        pass
            except OSError:
                pass
        for group in self._cgroups:
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    import time

                    time.sleep(0.02)
        self._cgroups = []

    def memory_exceeded(self) -> bool:
        """True when the memory cgroup recorded hitting its limit (an out-of-memory kill)."""
        for group in self._cgroups:
            failcnt = group / "memory.failcnt"
            if failcnt.exists() and failcnt.read_text().strip() not in ("", "0"):
                return True
        return False
