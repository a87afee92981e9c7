"""The sandbox a grading worker's runner lives in: bubblewrap, an allowlisted view of the machine, limits.

What the sandboxed processes see and may do:

* no network (an empty network namespace), their own PID, IPC, UTS and user namespaces;
* a filesystem built from an allowlist, all read-only: the system folders (``/usr`` and the
  ``/bin``, ``/lib`` links), a few files of ``/etc`` that programs need to start, the Python
  environment, the helpers package (``attnkit``) and the runner (:mod:`grading.sandboxed`);
  nothing else of the host exists in there: no home, no course folder, no gradebook, wherever it is;
* a private ``/tmp`` and working folder ``/scratch`` (tmpfs), which each submission gets anew and
  empty (:func:`grading.sandboxed.runner.isolate`);
* an environment built from an allowlist (:func:`environment`): no variable of the grader's reaches it;
* limits (:class:`grading.options.Limits`): memory and processes through a cgroup (v1 or v2, where
  the grader may create one) and rlimits, CPU time, open files, file size.
  :func:`enforced_limits` says which of them this machine enforces; the report prints it.

Where bubblewrap is missing (macOS, Windows, a container without user namespaces)
:func:`check_available` says why, and the grader refuses to run unless the instructor passes
``--no-sandbox``: then the same runner runs unconfined, as the grader's own user.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from grading.options import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
SCRATCH = "/scratch"  # the submission's working folder inside the sandbox
SHARED_TMPFS_BYTES = 64 << 20  # the sandbox-wide /tmp and /scratch beneath each submission's own
RUNNER_ROOT = "/grader"  # where grading/sandboxed/ is shown: /grader/grading/sandboxed
STASH = "/grader/stash"  # second view of the Python folders that lie under /tmp (see runner.isolate)
PROC_VIEW = "/grader/proc"  # the host's /proc, read-only: lets each submission mount its own (see runner.own_proc)


def _under_tmp(path: Path) -> bool:
    return Path(path).resolve().is_relative_to("/tmp")


def rebinds() -> str:
    """``stash:target`` pairs, ``;``-separated, for the Python folders under /tmp (ATTNKIT_REBIND)."""
    return ";".join(f"{STASH}/{i}:{root}" for i, root in enumerate(python_roots()) if _under_tmp(root))
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "passwd", "group",
       "nsswitch.conf", "fonts", "ssl", "ca-certificates", "mime.types")
ENV_PASSED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LANG", "TZ")  # harmless, and some are needed


class SandboxUnavailable(RuntimeError):
    """No sandbox can be built on this machine; the message says why and what to do."""


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
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--size", str(SHARED_TMPFS_BYTES), "--tmpfs", "/tmp",
                            "--unshare-all", "--die-with-parent", "true"], capture_output=True, text=True)
    if probe.returncode != 0 and "--size" in probe.stderr:
        raise SandboxUnavailable(
            f"this bubblewrap is too old: it has no --size ({probe.stderr.strip()}); install bubblewrap 0.6 or "
            "later, or pass --no-sandbox."
        )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap is installed but cannot create namespaces here ({probe.stderr.strip()}); "
            "enable unprivileged user namespaces or run as root, or pass --no-sandbox."
        )


def python_roots() -> list[Path]:
    """Folders the sandbox must show for this Python and its packages to start."""
    import attnkit

    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent.parent,
             Path(sys.executable).resolve().parent.parent, Path(attnkit.__file__).resolve().parent}
    for entry in sys.path:  # editable installs and .pth files may point elsewhere
        path = Path(entry)
        if entry and path.is_dir() and "site-packages" in path.parts:
            roots.add(path.resolve())
    return sorted({r.resolve() for r in roots})


def runner_package() -> Path:
    return Path(__file__).resolve().parent.parent / "sandboxed"


def environment(threads: int, sandboxed: bool) -> dict[str, str]:
    """The runner's whole environment: an allowlist, nothing inherited but harmless locale/BLAS settings."""
    env = _base_environment(threads, sandboxed)
    if not sandboxed:  # unconfined: each submission's own /proc is mounted beside the host's (see runner.own_proc)
        env["ATTNKIT_OWN_PROC"] = ""
    elif own_proc_problem() is None:
        env["ATTNKIT_OWN_PROC"] = PROC_VIEW
    return env


def _base_environment(threads: int, sandboxed: bool) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_PASSED if k in os.environ}
    env.update({
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": SCRATCH if sandboxed else "/nonexistent",
        "TMPDIR": "/tmp",
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "NBGRADER_EXECUTION": "autograde",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
    })
    if sandboxed:  # the runner's package, and the helpers where the grader found them (also a --target install)
        import attnkit

        env["PYTHONPATH"] = os.pathsep.join([RUNNER_ROOT, str(Path(attnkit.__file__).resolve().parent.parent)])
        env["ATTNKIT_SCRATCH"] = SCRATCH
        env["ATTNKIT_REBIND"] = rebinds()
    if threads:
        env.update({var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


# ------------------------------------------------------------------------------------------ cgroups


def _cgroup_v2_parent() -> Path | None:
    """A cgroup-v2 folder the grader may create children in (with memory and pids delegated), or None."""
    if not (CGROUP_ROOT / "cgroup.controllers").is_file():
        return None
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        relative = next(line.split("::", 1)[1] for line in own if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    for base in (CGROUP_ROOT / relative.lstrip("/"), CGROUP_ROOT):
        controllers = (base / "cgroup.subtree_control")
        if os.access(base, os.W_OK) and controllers.is_file():
            enabled = controllers.read_text().split()
            if {"memory", "pids"} <= set(enabled) or _enable_controllers(controllers):
                return base
    return None


def _enable_controllers(subtree_control: Path) -> bool:
    try:
        subtree_control.write_text("+memory +pids")
        return {"memory", "pids"} <= set(subtree_control.read_text().split())
    except OSError:
        return False


def _cgroup_v1(controller: str) -> Path | None:
    base = CGROUP_ROOT / controller
    if base.is_dir() and (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
        return base
    return None


@dataclass
class Cgroups:
    """The cgroups of one sandbox: created before it starts, removed (killing what is left) after."""

    limits: Limits
    name: str = field(default_factory=lambda: f"attnkit-{uuid.uuid4().hex[:12]}")
    groups: list[Path] = field(default_factory=list)
    version: int | None = None
    enforced: list[str] = field(default_factory=list)

    def create(self, root: Path | None = None) -> None:
        """Make the groups; ``root`` replaces /sys/fs/cgroup (tests)."""
        global CGROUP_ROOT
        saved = CGROUP_ROOT
        if root is not None:
            CGROUP_ROOT = root
        try:
            parent = _cgroup_v2_parent()
            if parent is not None:
                self._make(parent / self.name, {"memory.max": self.limits.memory_bytes, "memory.swap.max": 0,
                                                "pids.max": self.limits.max_processes}, 2)
                return
            for controller, values in (("memory", {"memory.limit_in_bytes": self.limits.memory_bytes, "memory.swappiness": 0}),
                                       ("pids", {"pids.max": self.limits.max_processes})):
                base = _cgroup_v1(controller)
                if base is not None:
                    self._make(base / self.name, values, 1)
        finally:
            CGROUP_ROOT = saved

    def _make(self, group: Path, values: dict, version: int) -> None:
        try:
            group.mkdir(exist_ok=True)
        except OSError:
            return
        self.groups.append(group)
        self.version = version
        for key, value in values.items():
            try:
                (group / key).write_text(str(value))
                if key in ("memory.max", "memory.limit_in_bytes"):
                    self.enforced.append(f"memory {self.limits.memory_bytes / 2**30:g} GiB (cgroup v{version})")
                elif key == "pids.max":
                    self.enforced.append(f"{self.limits.max_processes} processes (cgroup v{version})")
            except OSError:
                pass

    def join_command(self) -> list[str]:
        """A shell prefix that moves itself into the groups before exec'ing the sandbox."""
        if not self.groups:
            return []
        join = " && ".join(f'echo $$ > "{g}/cgroup.procs"' for g in self.groups)
        return ["/bin/sh", "-c", f'{join} && exec "$@"', "sandbox"]

    def memory_exceeded(self) -> bool:
        for group in self.groups:
            for name, marker in (("memory.failcnt", None), ("memory.events", "oom_kill")):
                path = group / name
                if not path.exists():
                    continue
                with contextlib.suppress(OSError, ValueError):
                    text = path.read_text()
                    if marker is None and text.strip() not in ("", "0"):
                        return True
                    if marker is not None:
                        counts = dict(line.split() for line in text.splitlines() if line.strip())
                        if int(counts.get(marker, 0)) > 0:
                            return True
        return False

    def remove(self) -> None:
        for group in self.groups:
            with contextlib.suppress(OSError):
                if (group / "cgroup.kill").exists():
                    (group / "cgroup.kill").write_text("1")
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), 9)
        for group in self.groups:
            for _ in range(100):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.groups = []


# ------------------------------------------------------------------------------------------ sandbox


@dataclass
class Sandbox:
    """One worker's sandbox. ``wrap(argv)`` returns the command line that starts ``argv`` in it."""

    limits: Limits = field(default_factory=Limits)
    cgroups: Cgroups | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        args = [
            *_bwrap(own_proc=own_proc_problem() is None),
            "prlimit",
            f"--data={self.limits.memory_bytes}",
            f"--cpu={self.limits.cpu_seconds + 60}",  # each submission sets its own, lower limit
            f"--nproc={self.limits.max_processes * 4}",
            f"--nofile={self.limits.max_open_files}",
            f"--fsize={self.limits.max_file_bytes}",
            "--core=0",
            "--",
            *argv,
        ]
        self.cgroups = Cgroups(self.limits)
        self.cgroups.create()
        return self.cgroups.join_command() + args

    def memory_exceeded(self) -> bool:
        return self.cgroups is not None and self.cgroups.memory_exceeded()

    def cleanup(self) -> None:
        if self.cgroups is not None:
            self.cgroups.remove()


def _bwrap(own_proc: bool) -> list[str]:
    """bwrap's command line, up to and including the ``--`` before the sandboxed command."""
    args = ["bwrap", "--tmpfs", "/"]
    for folder in SYSTEM:
        args += ["--ro-bind-try", folder, folder]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    # The sandbox's own /tmp and working folder, under every submission's fresh ones: only the zygote and
    # its preparers write there (IPython's profile, matplotlib's cache), so they are small.
    size = ["--size", str(SHARED_TMPFS_BYTES)]
    args += [*size, "--tmpfs", "/tmp"]  # before the binds: a Python environment may live under /tmp
    for i, root in enumerate(python_roots()):
        args += ["--ro-bind", str(root), str(root)]
        if _under_tmp(root):  # each submission gets a fresh /tmp: it binds these back from here
            args += ["--ro-bind", str(root), f"{STASH}/{i}"]
    args += ["--ro-bind", str(runner_package()), f"{RUNNER_ROOT}/grading/sandboxed"]
    if own_proc:
        args += ["--ro-bind", "/proc", PROC_VIEW]
    args += [
        "--dev", "/dev", "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
        "--proc", "/proc",
        *size, "--tmpfs", SCRATCH,
        "--remount-ro", "/",
        "--chdir", SCRATCH,
        "--unshare-all",  # network, PID, IPC, UTS, cgroup and user namespaces
        "--uid", "65534", "--gid", "65534",
        "--die-with-parent",
        "--new-session",  # no access to the grader's terminal
        "--",
    ]
    return args


@functools.cache
def own_proc_problem() -> str | None:
    """Why a submission could not mount a /proc of its own in this machine's sandbox (None: it can).

    Tried once per grading run, in a sandbox like the workers': the kernel allows it only where the host's
    /proc has nothing mounted on it (some container runtimes mask parts of it)."""
    probe = subprocess.run([*_bwrap(own_proc=True), sys.executable, "-m", "grading.sandboxed.runner", "--probe-own-proc"],
                           capture_output=True, text=True, env={**_base_environment(0, True), "ATTNKIT_OWN_PROC": PROC_VIEW},
                           timeout=60)
    return None if probe.returncode == 0 else (probe.stdout.strip() or probe.stderr.strip() or "unknown")[:200]


def enforced_limits(limits: Limits, sandboxed: bool) -> list[str]:
    """The limits this machine enforces on a submission, in words (for the report)."""
    if not sandboxed:
        return ["none: --no-sandbox (students' code runs as your user, without namespaces or limits)"]
    probe = Cgroups(limits)
    probe.create()
    words = list(probe.enforced)
    probe.remove()
    if not any(w.startswith("memory") for w in words):
        words.append(f"memory {limits.memory_bytes / 2**30:g} GiB per process (RLIMIT_DATA; no writable cgroup here)")
    if not any("processes" in w for w in words):
        words.append(f"{limits.max_processes * 4} processes (RLIMIT_NPROC; does not bind root; no writable cgroup here)")
    words += [f"CPU {limits.cpu_seconds} s (RLIMIT_CPU)", f"{limits.max_open_files} open files",
              f"files up to {limits.max_file_bytes / 2**20:g} MiB", f"scratch, /tmp and /dev/shm {limits.scratch_bytes / 2**20:g} MiB each",
              "no network", "fresh namespaces per submission"]
    problem = own_proc_problem()
    words.append("a /proc of its own per submission" if problem is None else
                 f"the worker's /proc, read-only, not one of the submission's own ({problem}): a submission can see "
                 "how many threads earlier ones started")
    return words
