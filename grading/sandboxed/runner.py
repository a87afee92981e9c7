"""The runner: a warm interpreter inside the sandbox that forks one isolated process per submission.

Started once per grading worker (``python -m grading.sandboxed.runner FD``, inside
:mod:`grading.execution.sandbox`; FD is its end of the control socket), the **zygote** imports
torch, IPython and matplotlib once, then waits for ``prepare`` and ``begin``.

0. on ``prepare`` (once per notebook) the zygote forks a **preparer**, which runs the course's cells
   before the notebook's first answer (the grader's copy, never a student's) and then waits;

For each submission:

1. the grader makes a fresh socket pair and sends one end with ``begin``;
2. the zygote (or, for a prepared notebook, its preparer, through a middle process that exits at once
   so that the isolator becomes the zygote's child) forks an **isolator**, which closes the control
   and preparer sockets (no process that runs student code ever holds them), enters new user, mount,
   IPC, PID and network namespaces, mounts fresh, size-limited tmpfs folders on ``/tmp``, ``/dev/shm``
   and the working folder, and makes every inherited descriptor its own (:func:`_blind_inherited_fds`);
3. the isolator forks the **submission process** (PID 1 of its new namespace, killed with the
   isolator): it mounts a /proc of its own (:func:`own_proc`), drops every capability, sets its rlimits and serves the grader's requests on its
   socket: execute a cell, list names, fetch a value, call a function.  It never sees a test's
   expected values and never decides a verdict;
4. on ``kill`` (or when the submission process dies) the zygote kills the isolator, waits until no
   process of the submission is left, and only then answers ``finished``.  The next submission
   starts from the zygote's (or the preparer's) untouched state: nothing of this one survives.

Calls that check how an answer computes (``peak``) are measured by the zygote from outside, as the
submission process's peak resident memory (``VmHWM``), which the student's code cannot switch off.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import io
import os
import re
import resource
import select
import signal
import socket
import sys
import time
import traceback

from grading.sandboxed import protocol
from grading.sandboxed.protocol import HANDLE, MAX_MESSAGE, MAX_TEXT, Op

SCRATCH = os.environ.get("ATTNKIT_SCRATCH") or os.getcwd()
# Set when each submission mounts a /proc of its own; its value is the host's /proc shown for that (see own_proc)
OWN_PROC = os.environ.get("ATTNKIT_OWN_PROC")
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWIPC = 0x00020000, 0x10000000, 0x20000000, 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
PR_SET_DUMPABLE, PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 1, 36, 38


# ---------------------------------------------------------------------------------- isolation


def _prctl(option: int, value: int) -> None:
    _libc.prctl(option, value, 0, 0, 0)


def _drop_capabilities() -> None:
    """capset(2) with empty sets: whatever the namespaces granted, nothing privileged remains."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    _libc.capset(ctypes.byref(header), data)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _seccomp_filter() -> bool:
    """A seccomp filter for the submission process and everything it starts:

    * the kernel keyrings (keyctl, add_key, request_key) answer EPERM, so a submission can neither read
      nor change the keys of the user the grader runs as;
    * no new processes: fork, vfork and a clone that is not a thread answer EPERM (clone3, whose flags a
      filter cannot read, answers ENOSYS, and the C library falls back to clone).  Threads still work.
      So a submission cannot do its work in a child that the peak-memory measure of the submission
      process would not see, nor fork-bomb the sandbox;
    * no namespaces and no mounts of its own: unshare, setns, a clone with a CLONE_NEW* flag, mount,
      umount, pivot_root, chroot and the new mount calls answer EPERM.  A private mount namespace would
      let a submission show itself its own files through a read-only bind mount, which the memory
      measure reads as a library's pages that no answer could fill;
    * ``madvise`` with advice that hides which pages a call touched, ``process_madvise`` and io_uring (whose
      requests, madvise included, run in kernel threads this filter never sees) answer EPERM;
    * the tools that read and empty the page cache of files every submission can read answer EPERM:
      ``posix_fadvise(POSIX_FADV_DONTNEED)``, ``preadv2``/``pwritev2`` with ``RWF_NOWAIT`` (which tells a
      cached page from one that is not without loading it), ``mincore`` and ``cachestat``.  One submission
      emptied or filled chosen pages of a library file and the next read them back, bit by bit (mincore
      tells the truth about a file whose owner the submission's uid maps to: the grader's own venv);
    * calls of another ABI (x32, 32-bit) answer EPERM.
    """
    import platform
    import struct

    # The new mount API (open_tree, move_mount, fsopen, fsconfig, fsmount, fspick; mount_setattr) has the
    # same numbers on every architecture.
    mount_api = (428, 429, 430, 431, 432, 433, 442)
    io_uring = (425, 426, 427)  # io_uring_setup, _enter, _register (same numbers everywhere): its madvise escapes this filter
    cachestat = 451  # and mincore: 27 on x86_64, 232 on aarch64
    arches = {  # audit arch; refused calls (keyrings, process_madvise; namespaces and mounts); fork-like calls;
        # clone; clone3; madvise; fadvise64; preadv2 and pwritev2
        "x86_64": (0xC000003E, (248, 249, 250, 440, 272, 308, 165, 166, 155, 161, *mount_api, *io_uring, cachestat, 27),
                   (57, 58), 56, 435, 28, 221, (327, 328)),
        "aarch64": (0xC00000B7, (217, 218, 219, 440, 97, 268, 40, 39, 41, 51, *mount_api, *io_uring, cachestat, 232),
                    (), 220, 435, 233, 223, (286, 287)),
    }
    native = arches.get(platform.machine())
    if native is None:
        return False
    audit_arch, refused, forks, clone, clone3, madvise, fadvise, rw2 = native
    # Advice that would make pages look untouched (MADV_FREE, MADV_COLD, MADV_PAGEOUT clear their
    # referenced bits) or swap them for new ones (MADV_MERGEABLE, MADV_HUGEPAGE, MADV_COLLAPSE): refused,
    # so that the memory measure sees what a call read and wrote.  Libraries treat advice as optional.
    hiding_advice = (8, 20, 21, 12, 14, 25)
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    CLONE_THREAD = 0x00010000
    FADV_DONTNEED, RWF_NOWAIT = 4, 0x8
    CLONE_NEW = 0x7E020000  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (NEWTIME: unshare only)
    # (code, true target, false target, k) with symbolic targets: None = the next instruction
    body = [("arch", LD, None, None, 4), (None, JEQ, None, "deny", audit_arch), (None, LD, None, None, 0),
            (None, JGE, "deny", None, 0x40000000)]
    body += [(None, JEQ, "deny", None, nr) for nr in (*refused, *forks)]
    body += [(None, JEQ, "enosys", None, clone3), (None, JEQ, "clone", None, clone), (None, JEQ, "madvise", None, madvise),
             (None, JEQ, "fadvise", None, fadvise)]
    body += [(None, JEQ, "rw2", None, nr) for nr in rw2]
    body += [(None, RET, None, None, ALLOW),
             ("clone", LD, None, None, 16), (None, JSET, "deny", None, CLONE_NEW),  # args[0], low 32 bits: the flags
             (None, JSET, "allow", "deny", CLONE_THREAD),
             ("fadvise", LD, None, None, 40), (None, JEQ, "deny", "allow", FADV_DONTNEED),  # args[3]: the advice
             ("rw2", LD, None, None, 56), (None, JSET, "deny", "allow", RWF_NOWAIT),  # args[5]: the flags
             ("madvise", LD, None, None, 32)]  # args[2], low 32 bits: the advice
    body += [(None, JEQ, "deny", None, advice) for advice in hiding_advice]
    body += [("allow", RET, None, None, ALLOW), ("deny", RET, None, None, EPERM), ("enosys", RET, None, None, ENOSYS)]
    where = {label: i for i, (label, *_) in enumerate(body) if label}

    def jump(target, i: int) -> int:
        return 0 if target is None else where[target] - i - 1

    code = b"".join(struct.pack("HBBI", op, jump(t, i), jump(f, i), k) for i, (_, op, t, f, k) in enumerate(body))
    buffer = ctypes.create_string_buffer(code)

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Program(len(body), ctypes.addressof(buffer))
    return _libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def isolate(scratch_bytes: int) -> list[str]:
    """New namespaces and fresh tmpfs folders for this process and its children; what failed, in words."""
    problems = []
    uid, gid = os.getuid(), os.getgid()
    # A network namespace of its own too: the sandbox's is the worker's, and its state (sockets left in
    # TIME_WAIT on chosen loopback ports) outlived one submission for the next to read.
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET) != 0:
        return [f"no private namespaces ({os.strerror(ctypes.get_errno())})"]
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    # /proc read-only: a submission could otherwise reset its own peak-memory record (clear_refs), which
    # the zygote reads from its own, writable /proc to measure how an answer computes
    kept = os.statvfs("/proc").f_flag  # a remount must keep the flags it was mounted with (nosuid, noexec, ...)
    flags = (kept & 0xF0E) | (1 << 21 if kept & 4096 else 0)  # ST_NOSUID.. ST_NOEXEC, noatime, nodiratime; relatime
    if (_libc.mount(b"/proc", b"/proc", None, MS_BIND | MS_REC, None) != 0
            or _libc.mount(None, b"/proc", None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, None) != 0):
        problems.append(f"no read-only /proc ({os.strerror(ctypes.get_errno())})")
    options = f"size={scratch_bytes},mode=1777".encode()
    pairs = [p.split(":", 1) for p in os.environ.get("ATTNKIT_REBIND", "").split(";") if ":" in p]
    python_in_tmp = any(p.startswith("/tmp/") for p in sys.path) and not pairs
    for folder in ("/tmp", "/dev/shm", SCRATCH):  # the scratch folder may lie in /tmp (--no-sandbox): made anew there
        if folder == "/tmp" and python_in_tmp:  # unconfined, with Python under /tmp: a fresh /tmp would hide it
            problems.append("no fresh /tmp (the Python environment lies under /tmp)")
            continue
        os.makedirs(folder, exist_ok=True)
        if _libc.mount(b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
            problems.append(f"no fresh {folder} ({os.strerror(ctypes.get_errno())})")
    for stash, target in pairs:  # the Python folders that lie under /tmp, back where Python expects them
        os.makedirs(target, exist_ok=True)
        if _libc.mount(stash.encode(), target.encode(), None, MS_BIND | MS_REC, None) != 0:
            problems.append(f"{target} not shown again ({os.strerror(ctypes.get_errno())})")
    return problems


def own_proc(host_view: str) -> str | None:
    """From PID 1 of a new PID namespace: mount a read-only /proc that shows this namespace alone, then cover
    ``host_view``; what failed, in words.

    The worker's /proc shows the ids of the worker's PID namespace, whose counter outlives a submission: one
    submission moved it on with threads and the next read it back as its own id there (``/proc/self``).  In
    a /proc of its own every submission is PID 1 and its threads count from 2.  The kernel mounts a new proc
    only in a mount namespace where one is already wholly visible, and bwrap's is not (it covers parts of
    it): the sandbox shows the host's /proc, read-only, at ``host_view`` for this mount alone, and each
    submission hides it under an empty folder before any of its code runs.
    """
    if _libc.mount(b"proc", b"/proc", b"proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        return f"no /proc of its own ({os.strerror(ctypes.get_errno())})"
    if host_view and _libc.mount(b"tmpfs", host_view.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
                                 b"size=4k,mode=0555") != 0:
        return f"the host's /proc not hidden ({os.strerror(ctypes.get_errno())})"
    return None


def probe_own_proc() -> int:
    """``--probe-own-proc``: whether a submission could mount a /proc of its own here (exit status 0), else why."""
    problems = isolate(1 << 20)
    child = os.fork()
    if child == 0:
        problem = own_proc(OWN_PROC or "")
        print(problem or "", end="")
        os._exit(1 if problem else 0)
    _, status = os.waitpid(child, 0)
    if problems:
        print("; ".join(problems), end="")
    return 1 if problems else os.waitstatus_to_exitcode(status)


# ---------------------------------------------------------------------------------- the student's shell


_NOTES: list[str] = []  # what the current cell's habits were turned into, in words (one list for the shell and google.colab)
_INSTALLERS = ("pip", "pip3", "conda", "mamba", "micromamba", "uv", "apt", "apt-get")
_SHELL_CELLS = ("bash", "sh", "shell", "script", "system")  # cell magics that run shell commands


def _installs(command) -> bool:
    """A package installer's command line (``pip install``, ``python -m pip ...``, ``conda``, ``apt-get``...),
    as a string (``!pip``, ``os.system``) or an argument list (``subprocess.run``)."""
    words = command if isinstance(command, (list, tuple)) else str(command).split()
    words = [os.path.basename(str(w)) for w in words if str(w) != "sudo"]
    return bool(words) and (words[0] in _INSTALLERS or "-m" in words[1:-1] and words[words.index("-m") + 1] == "pip")


def _once(line: str) -> str:
    """``%timeit`` options with the loop and repeat counts replaced by one run (``-n1 -r1``)."""
    rest, kept = line.lstrip(), []
    while m := re.match(r"(-[nrp])\s*(\d+)\s*|(-[A-Za-z]+)(?:\s+|$)", rest):
        if m.group(3) or m.group(1) == "-p":
            kept.append(m.group(0).strip())
        rest = rest[m.end():]
    return " ".join(["-n1", "-r1", *kept, rest]).strip()


def _shell_class():
    """IPython's shell, with the habits of real notebooks made harmless (and each noted).

    Figures: ``%matplotlib inline`` / ``%gui`` need no event loop (figures are captured as images
    after each cell).  Installs: ``!pip``, ``%pip``, ``%conda``, ... are skipped at once (there is no
    network; pip reached another way gives up at once too).  ``!cmd`` and ``%%bash``-like cells are
    skipped.  ``%timeit`` / ``%%timeit`` run their statement once.  A magic this IPython does not
    have (Colab's ``%tensorflow_version``, ``%%shell``) and an extension that is not installed
    (``%load_ext tensorboard``) are skipped instead of failing the cell.
    """
    from IPython.core.interactiveshell import InteractiveShell

    class Shell(InteractiveShell):
        notes = _NOTES

        def init_environment(self):
            super().init_environment()
            os.environ.update({"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_RETRIES": "0", "PIP_TIMEOUT": "1"})

        def enable_gui(self, gui=None):  # `%matplotlib inline`, `%gui`: no event loop here
            self.notes.append(f"`%matplotlib`/`%gui {gui or ''}`: figures are captured as images")

        def enable_matplotlib(self, gui=None):
            self.notes.append(f"`%matplotlib {gui or ''}`".replace(" `", "`") + ": figures are captured as images")
            return gui, "agg"

        def system(self, cmd):  # `!pip install ...`: no network in the sandbox, do not wait for it
            cmd = cmd.strip()
            if _installs(cmd):
                self.notes.append(f"`!{cmd[:60]}` skipped (nothing is installed while grading)")
            else:
                self.notes.append(f"`!{cmd[:60]}` skipped (no shell commands while grading)")
                print(f"(skipped while grading: !{cmd[:60]})")

        system_raw = system

        def run_line_magic(self, magic_name, line, _stack_depth=1):
            shown = f"%{magic_name} {line.strip()}".strip()[:60]
            if magic_name in _INSTALLERS:
                self.notes.append(f"`{shown}` skipped (nothing is installed while grading)")
                return None
            if self.find_line_magic(magic_name) is None:
                self.notes.append(f"`{shown}` skipped (not available while grading)")
                return None
            if magic_name == "timeit":
                self.notes.append(f"`{shown}` ran its statement once (no timing loops while grading)")
                line = _once(line)
            if magic_name == "load_ext":
                try:
                    return super().run_line_magic(magic_name, line, _stack_depth + 1)
                except ImportError:
                    self.notes.append(f"`{shown}` skipped (the extension is not installed here)")
                    return None
            return super().run_line_magic(magic_name, line, _stack_depth + 1)

        def run_cell_magic(self, magic_name, line, cell):
            shown = f"%%{magic_name} {line.strip()}".strip()[:60]
            if magic_name in _SHELL_CELLS:
                self.notes.append(f"`{shown}` cell skipped (no shell commands while grading)")
                return None
            if self.find_cell_magic(magic_name) is None:
                self.notes.append(f"`{shown}` cell skipped (not available while grading)")
                return None
            if magic_name == "timeit":
                self.notes.append(f"`{shown}` ran its cell once (no timing loops while grading)")
                line = _once(line)
            return super().run_cell_magic(magic_name, line, cell)

    return Shell


def _fake_colab() -> None:
    """``from google.colab import drive, files, output, ...`` works; Drive, uploads and secrets do nothing."""
    import types

    colab = types.ModuleType("google.colab")
    notes = _NOTES

    def _noop(what, value=None):
        def run(*args, **kwargs):
            notes.append(f"`{what}(...)` did nothing (no Google Drive or browser while grading)")
            return value() if value else None

        return run

    class SecretNotFoundError(Exception):
        pass

    def _secret(key, *args, **kwargs):
        notes.append(f"`userdata.get({key!r})`: no secrets while grading")
        raise SecretNotFoundError(f"Secret {key} does not exist (no Colab secrets while grading).")

    subs = {
        "drive": types.SimpleNamespace(mount=_noop("drive.mount"), flush_and_unmount=_noop("drive.flush_and_unmount")),
        "files": types.SimpleNamespace(upload=_noop("files.upload", dict), download=_noop("files.download")),
        "output": types.SimpleNamespace(enable_custom_widget_manager=lambda: None, disable_custom_widget_manager=lambda: None,
                                        clear=lambda *a, **k: None, eval_js=_noop("output.eval_js")),
        "auth": types.SimpleNamespace(authenticate_user=_noop("auth.authenticate_user")),
        "userdata": types.SimpleNamespace(get=_secret, SecretNotFoundError=SecretNotFoundError),
        "patches": types.SimpleNamespace(cv2_imshow=_noop("cv2_imshow")),
    }
    for sub, module in subs.items():
        setattr(colab, sub, module)
        sys.modules[f"google.colab.{sub}"] = module
    try:
        import google
    except ImportError:
        google = types.ModuleType("google")
        google.__path__ = []
        sys.modules["google"] = google
    google.colab = colab
    sys.modules["google.colab"] = colab


def _quiet_installers() -> None:
    """``subprocess.run([sys.executable, "-m", "pip", "install", ...])`` and ``os.system("pip install ...")`` in a
    student's code succeed at once without running anything (and are noted): a submission may not start
    processes (the seccomp filter), and there is nothing to install while grading.  Other commands fail
    with PermissionError, as the filter makes them."""
    import subprocess

    def skipped(command) -> str:
        words = list(command) if isinstance(command, (list, tuple)) else str(command).split()
        shown = " ".join([os.path.basename(str(words[0])), *map(str, words[1:])]) if words else ""
        _NOTES.append(f"`{shown[:60]}` skipped (nothing is installed while grading)")
        return shown

    def wrap(real, result):
        def run(*args, **kwargs):
            command = args[0] if args else kwargs.get("args", "")
            if not _installs(command):
                return real(*args, **kwargs)
            shown = skipped(command)
            return result(shown, kwargs)
        return run

    def completed(shown, kwargs):
        text = kwargs.get("text") or kwargs.get("universal_newlines") or kwargs.get("encoding")
        captured = kwargs.get("capture_output") or kwargs.get("stdout") is subprocess.PIPE
        empty = ("" if text else b"") if captured else None
        return subprocess.CompletedProcess(shown, 0, empty, empty)

    subprocess.run = wrap(subprocess.run, completed)
    subprocess.call = wrap(subprocess.call, lambda shown, kwargs: 0)
    subprocess.check_call = wrap(subprocess.check_call, lambda shown, kwargs: 0)
    subprocess.check_output = wrap(subprocess.check_output, lambda shown, kwargs: "" if kwargs.get("text") else b"")
    os.system = wrap(os.system, lambda shown, kwargs: 0)


def _capture_figures(shell) -> list:
    """Open figures as PNG display outputs (what the student's notebook would show), then closed."""
    import base64

    import matplotlib.pyplot as plt

    outputs = []
    for number in plt.get_fignums()[:8]:
        fig = plt.figure(number)
        buf = io.BytesIO()
        with contextlib.suppress(Exception):
            fig.savefig(buf, format="png", dpi=72)  # no tight bbox: it draws the figure twice
            outputs.append({"png": base64.b64encode(buf.getvalue()).decode(), "text": repr(fig)})
    plt.close("all")
    return outputs


class Submission:
    """One submission's process: its shell and the objects handed out to the grader."""

    def __init__(self, torch_module, channel: int, reply_bytes: int) -> None:
        self.torch = torch_module
        self.channel = channel
        self.reply_bytes = reply_bytes
        from traitlets.config import Config

        config = Config()
        # No history database: a preparer's shell would open it in the sandbox-wide working folder, and the
        # open file would pass to every submission forked from it, a file to leave things in for the next.
        config.HistoryManager.enabled = False
        self.shell = _shell_class().instance(config=config)
        self.shell.user_ns["__name__"] = "__main__"
        self.handles: dict[int, object] = {}
        _fake_colab()
        _quiet_installers()

    # ------------------------------------------------------------------ values
    def encode(self, value, depth: int = 0):
        torch = self.torch
        if value is None or isinstance(value, (bool, int, float, str, complex)):
            return value
        if isinstance(value, torch.Tensor):
            if value.numel() * value.element_size() > self.reply_bytes:
                raise ValueError(f"a tensor of {value.numel() * value.element_size() / 2**20:.0f} MiB is too large to check")
            # A plain, contiguous, detached CPU copy: no subclass, no hooks, no autograd graph.
            return value.detach().to("cpu").as_subclass(torch.Tensor).contiguous().clone()
        if isinstance(value, (torch.dtype, torch.device, torch.Size)):
            return value
        if depth < 4 and isinstance(value, (list, tuple)) and len(value) <= 10_000:
            items = [self.encode(v, depth + 1) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        if (depth < 4 and type(value) is dict and HANDLE not in value and len(value) <= 10_000
                and all(isinstance(k, str) for k in value)):
            return {k: self.encode(v, depth + 1) for k, v in value.items()}
        handle = len(self.handles) + 1
        self.handles[handle] = value
        return {HANDLE: handle, "callable": callable(value), "kind": type(value).__name__[:80]}

    def decode(self, value):
        if isinstance(value, dict):
            if set(value) == {HANDLE}:
                return self.handles[value[HANDLE]]
            return {k: self.decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.decode(v) for v in value)
        return value

    # ------------------------------------------------------------------ requests
    def op_exec(self, request: dict) -> dict:
        out, err = io.StringIO(), io.StringIO()
        notes = self.shell.notes
        notes.clear()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = self.shell.run_cell(request["source"], store_history=False, silent=False)
            figures = _capture_figures(self.shell) if request.get("figures") else []
        error = result.error_before_exec or result.error_in_exec
        reply: dict = {"ok": error is None, "stdout": out.getvalue()[-MAX_TEXT:], "stderr": err.getvalue()[-MAX_TEXT:],
                       "figures": figures, "neutralised": list(dict.fromkeys(notes))}
        if error is not None:
            reply["ename"] = type(error).__name__[:100]
            reply["evalue"] = str(error)[:MAX_MESSAGE]
            reply["traceback"] = "".join(traceback.format_exception(error))[-MAX_TEXT:]
        return reply

    def op_names(self, request: dict) -> dict:
        hidden = set(self.shell.user_ns_hidden)
        return {"names": sorted(k for k in self.shell.user_ns if isinstance(k, str) and not k.startswith("_") and k not in hidden)}

    def op_get(self, request: dict) -> dict:
        return {"value": self.encode(self.shell.user_ns[request["name"]])}

    def op_getattr(self, request: dict) -> dict:
        return {"value": self.encode(getattr(self.handles[request["handle"]], request["attr"]))}

    def op_call(self, request: dict) -> dict:
        torch = self.torch
        target = self.handles[request["handle"]]
        if request.get("method"):
            target = getattr(target, request["method"])
        args = tuple(self.decode(request.get("args", ())))
        kwargs = tuple(self.decode(request.get("kwargs", {})).items())  # tuples: nothing can swap an argument
        # No collection during any call: one would touch the whole heap and count as a measured call's memory,
        # and pausing it only for measured calls would tell the answer when it is measured.
        collecting = gc.isenabled()
        gc.disable()
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                value = target(*args, **dict(kwargs))
        finally:
            if collecting:
                gc.enable()
        reply = {"value": self.encode(value)}
        # The final state of every tensor argument travels back, and the grader, not this process, compares
        # it with what it sent: a verdict kept here (a copy from before the call) is within the answer's reach.
        # The arguments are read from the tuples above, which the answer cannot rebind.
        reply["after"] = self.final_state(protocol.tensor_arguments(args, dict(kwargs)))
        return reply

    def final_state(self, tensors: dict) -> dict:
        """Each argument tensor as it is now: whole while they fit in ``AFTER_BYTES``, else its SHA-256."""
        whole = sum(t.numel() * t.element_size() for t in tensors.values()) <= protocol.AFTER_BYTES
        return {path: protocol.plain_tensor(t, copy=True) if whole else protocol.tensor_digest(t) for path, t in tensors.items()}

    def serve(self, problems: list[str]) -> None:
        torch = self.torch
        protocol.send(self.channel, {"ready": True, "pid": os.getpid(), "problems": problems})
        while True:
            try:
                request = protocol.receive(self.channel, limit=1 << 30)
            except KeyboardInterrupt:  # an interrupt that arrived after the work it was meant for
                continue
            if request is None or request.get("op") == Op.END.value:
                return
            try:
                op = Op(request["op"])
                reply = getattr(self, f"op_{op.value}")(request)
            except BaseException as exc:  # the student's object raised: report it, keep serving
                reply = {"raised": type(exc).__name__[:100], "message": str(exc)[:MAX_MESSAGE]}
            try:
                payload = protocol.frame(reply)
            except Exception as exc:  # an unserialisable value
                payload = protocol.frame({"raised": "TypeError", "message": f"cannot send the value back: {type(exc).__name__}"})
            del reply
            protocol.write_all(self.channel, payload)
            torch.set_grad_enabled(True)


def _blind_inherited_fds(keep: set[int]) -> None:
    """Make every inherited descriptor the submission's own, or harmless: all but ``keep``.

    A read-only regular file (a font matplotlib keeps open) is opened again and put in its place: the
    inherited one shares its file offset and its locks (``flock``, OFD locks) with the zygote or preparer
    and so with every later submission, 63 bits an offset and any number of locks to leave for the next.
    The new one is this submission's alone and dies with it.  Any other descriptor (one it could write
    through) is pointed at /dev/null; the number stays taken, so code that still holds it (none is
    expected) cannot reach a file opened later."""
    import stat

    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep or fd == null:
            continue
        try:
            read_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY and stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:  # the listing's own descriptor, closed already
            continue
        own = -1
        if read_only:
            with contextlib.suppress(OSError):
                own = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(own if own >= 0 else null, fd, inheritable=False)
        if own >= 0:
            os.close(own)
    os.close(null)


def _isolator(report: int, channel: int, limits: dict, torch_module, prepared: Submission | None) -> None:
    """Between the zygote and a submission: enter new namespaces, fork the submission's process, report
    both pids (``isolator\nsubmission\nproblems``) on ``report`` and wait for it.  Never returns."""
    try:
        problems = isolate(int(limits.get("scratch_bytes", 256 << 20)))
        _blind_inherited_fds(keep={0, 1, 2, report, channel})
        child = os.fork()
        if child == 0:
            os.close(report)
            _submission_process(channel, limits, torch_module, prepared)
            os._exit(0)
        os.close(channel)
        os.write(report, f"{os.getpid()}\n{child}\n{'|'.join(problems)}".encode())
        os.close(report)
        _, status = os.waitpid(child, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(70)


def _submission_process(channel: int, limits: dict, torch_module, prepared: Submission | None = None) -> None:
    """PID 1 of the submission's namespaces: drop privileges, set limits, serve (from the state of the
    course's first cells when ``prepared``: they ran in the preparer this process was forked from)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    problem = own_proc(OWN_PROC) if OWN_PROC is not None else None
    _drop_capabilities()
    # Dumpable again (the zygote is not, and forks inherit that): the zygote reads this process's memory
    # map (/proc/<pid>/smaps) for the memory measure; nothing but the zygote and the grader shares its uid.
    _prctl(PR_SET_DUMPABLE, 1)
    _seccomp_filter()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the runner's stderr is shared by every submission of this worker: not theirs to use
        os.dup2(null, fd)
    os.close(null)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name, key in (("RLIMIT_DATA", "memory_bytes"), ("RLIMIT_CPU", "cpu_seconds")):
        if limits.get(key):
            resource.setrlimit(getattr(resource, name), (limits[key], limits[key]))
    os.chdir(SCRATCH)
    reply_bytes = int(limits.get("reply_bytes", 64 << 20))
    if prepared is None:
        torch_module.manual_seed(0)
        prepared = Submission(torch_module, channel, reply_bytes)
    prepared.channel, prepared.reply_bytes = channel, reply_bytes
    prepared.serve(problems=[problem] if problem else [])


def _preparer(sock: socket.socket, cells: list, torch_module) -> None:
    """A child of the zygote that runs the course's first cells once and then forks, from their state, the
    isolator of each submission of that notebook.  Never returns.

    The cells are the grader's copy of the released notebook's locked cells, sent only for submissions
    whose own are the same: no student's code runs here, so the state every submission inherits is the
    course's.  The isolator is forked through a short-lived middle process: orphaned, it becomes the
    zygote's child (the zygote is the subreaper), which waits for it, measures it and kills it as for
    one it forked itself.
    """
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    torch_module.manual_seed(0)  # as a submission process starts
    prepared = Submission(torch_module, -1, 0)
    replies = [prepared.op_exec({"source": str(source), "figures": True}) for source in cells]
    files = [list(f) for f in sorted(_file_ids("/proc/self/maps"))]  # what the course's cells mapped (fonts): not answers'
    sock.sendall(protocol.frame({"prepared": replies, "files": files}))
    while True:
        request, fds = protocol.receive_with_fds(sock)
        if request is None or len(fds) != 2:
            os._exit(0)
        channel, report = fds
        middle = os.fork()
        if middle == 0:
            sock.close()
            if os.fork() == 0:
                _isolator(report, channel, request.get("limits", {}), torch_module, prepared)
            os._exit(0)
        os.close(channel)
        os.close(report)
        os.waitpid(middle, 0)  # the isolator is the zygote's now
        sock.sendall(protocol.frame({"forked": True}))


# ---------------------------------------------------------------------------------- the zygote

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")  # the first line of a mapping's block in /proc/<pid>/smaps
PAGE = os.sysconf("SC_PAGE_SIZE")
# A memory map this long, or this slow to read, is not read to the end: the reading fails, and so does the
# check (a submission process of the course maps about 2 MB of smaps text).
SMAPS_BYTES, SMAPS_SECONDS = 32 << 20, 3.0
MAX_PREPARERS = 4  # prepared first cells kept per zygote (the course has three notebooks)


def _file_ids(maps: str) -> set[tuple[str, str]]:
    """(device, inode) of every file a process has mapped, from its /proc/<pid>/maps."""
    ids = set()
    with open(maps) as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) > 5 and fields[5].startswith("/") and fields[4] != "0":
                ids.add((fields[3], fields[4]))
    return ids


def _read_only_devices(pid: int) -> set[tuple[int, int]]:
    """Devices that every mount of, in the process's own mount namespace, is read-only: no file on them
    can be written from there.  By device, not by path: a path in smaps is the kernel's escaped text
    (a newline reads as ``\\012``), which a symlink of that name could make point anywhere."""
    writable, seen = set(), set()
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            major, minor = (int(x) for x in fields[2].split(":"))
            tail = fields[fields.index("-") + 1:] if "-" in fields else []
            options = set(fields[5].split(",")) | (set(tail[2].split(",")) if len(tail) > 2 else set())
            seen.add((major, minor))
            if "ro" not in options:
                writable.add((major, minor))
    return seen - writable


def _may_hold_answer_data(header: str, libraries: set, read_only: set[tuple[int, int]]) -> bool:
    """Whether a mapping (its line in smaps) may hold data the answer wrote, directly or through the kernel
    (``pwrite`` into a file it then maps read-only): anything writable or shared, anonymous memory, and
    files on a device the submission can write (its /tmp, /dev/shm, scratch; memfd and deleted files).
    Left out: private, read-only mappings of the files the zygote itself had mapped before any student code
    ran (``libraries``: the interpreter, torch, ...) and of files on ``read_only`` devices."""
    fields = header.split(maxsplit=5)
    perms, path = fields[1], fields[5].strip() if len(fields) > 5 else ""
    if "w" in perms or perms[3:] == "s" or not path.startswith("/") or path.endswith("(deleted)") or fields[4] == "0":
        return True
    if (fields[3], fields[4]) in libraries:
        return False
    major, minor = (int(x, 16) for x in fields[3].split(":"))
    return (major, minor) not in read_only


class Zygote:
    def __init__(self, control: socket.socket, torch_module, own_namespace: bool) -> None:
        self.control = control
        self.own_namespace = own_namespace  # inside bwrap: every process here but PID 1 and us is a submission's
        self.torch = torch_module
        self.isolator: int | None = None  # pid of the current submission's isolator
        self.process: int | None = None  # pid of its submission process (as seen here)
        self.status = 0
        self.disk_blocks = 0  # 512-byte blocks the current submission's processes read from storage (see kill)
        self.measuring, self.lowest_seen, self.faults_at_reset = False, 0, 0  # see peak()
        self.own_at_reset = self.lowest_own = 0
        self.libraries = _file_ids("/proc/self/maps")  # mapped before any student code: not theirs to fill
        self.preparers: dict[str, tuple[int, socket.socket]] = {}  # key of the first cells -> (pid, socket)

    def reply(self, message: dict) -> None:
        self.control.sendall(protocol.frame(message))

    def prepare(self, request: dict) -> None:
        """Fork a preparer (:func:`_preparer`) for these first cells, once per ``key``; reply their outputs."""
        key = str(request.get("key", ""))[:64]
        if key in self.preparers:
            self.reply({"prepared": None})
            return
        if len(self.preparers) >= MAX_PREPARERS:  # the least recently made goes
            self._drop_preparer(next(iter(self.preparers)))
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            try:
                self._leave(ours)
                _preparer(theirs, list(request.get("cells", [])), self.torch)
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            os._exit(70)
        theirs.close()
        prepared = protocol.receive(ours.fileno(), limit=protocol.MAX_PREPARED)
        if prepared is None:
            os.waitpid(pid, 0)
            ours.close()
            self.reply({"prepared": None})
            return
        self.preparers[key] = (pid, ours)
        self.libraries |= {tuple(f) for f in prepared.get("files", [])}
        self.reply({"prepared": prepared.get("prepared")})

    def _leave(self, *extra: socket.socket) -> None:
        """In a child of the zygote: close the channels that are the zygote's alone (control, preparers)."""
        for sock in (self.control, *extra, *(sock for _, sock in self.preparers.values())):
            sock.close()

    def _drop_preparer(self, key: str) -> None:
        pid, sock = self.preparers.pop(key)
        sock.close()  # it exits on end of file
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def begin(self, request: dict, fds: list[int]) -> None:
        limits = request.get("limits", {})
        key = request.get("prepared")
        report_r, report_w = os.pipe()
        try:
            if key is not None:
                started = self._fork_prepared(str(key), limits, fds[0], report_w)
            else:
                if os.fork() == 0:
                    try:
                        self._leave()
                        os.close(report_r)
                    except BaseException:
                        os._exit(70)
                    _isolator(report_w, fds[0], limits, self.torch, None)
                started = True
        finally:  # handed on: the isolator holds its own copies
            for fd in (*fds, report_w):
                os.close(fd)
        if not started:
            os.close(report_r)
            self.reply({"started": False, "unprepared": True})
            return
        text = b""
        while chunk := os.read(report_r, 4096):
            text += chunk
        os.close(report_r)
        isolator, _, rest = text.decode().partition("\n")
        first, _, problems = rest.partition("\n")
        self.isolator = int(isolator) if isolator.strip().isdigit() else None
        self.process = int(first) if first.strip().isdigit() else None
        self.reply({"started": True, "problems": [p for p in problems.split("|") if p]})

    def _fork_prepared(self, key: str, limits: dict, channel: int, report_w: int) -> bool:
        """Have the preparer for ``key`` fork the submission's isolator; False when there is none (any more)."""
        entry = self.preparers.get(key)
        if entry is None:
            return False
        try:
            protocol.send_with_fds(entry[1], {"op": Op.BEGIN.value, "limits": limits}, [channel, report_w])
            forked = protocol.receive(entry[1].fileno(), limit=1 << 10)
        except (OSError, protocol.ProtocolError):
            forked = None
        if not (forked or {}).get("forked"):
            self._drop_preparer(key)
            return False
        return True

    def interrupt(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.process, signal.SIGINT)

    def peak(self, reset: bool) -> dict:
        """Start (``reset``) or end a measurement of the submission's memory during one call.

        Five readings, all from outside: the peak resident memory (``VmHWM``, reset at the start); the
        lowest resident memory seen while the call ran (sampled every millisecond), so that memory the
        call gave back and took again cannot hide what it used meanwhile; how much of the process's own
        memory (anonymous and shared, not file pages) it gave back during the call, so that a buffer
        written and then dropped cannot hide behind file pages mapped in its place; the bytes of the page
        faults it caused, which count every page it touched for the first time, even briefly; and the
        memory it read or wrote in any mapping that may hold its data (the pages' "referenced" bits,
        cleared at the start), so that a buffer made before the call and written in place counts too.
        """
        self.measuring = False
        if self.process is None:
            return {"peak": None}
        try:
            if reset:
                for what in ("5", "1"):  # reset the peak resident memory; clear every page's referenced bit
                    with open(f"/proc/{self.process}/clear_refs", "w") as f:
                        f.write(what)
            with open(f"/proc/{self.process}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            faults = self._faults()
            current = int(fields["VmRSS"].split()[0]) * 1024
            own = (int(fields["RssAnon"].split()[0]) + int(fields["RssShmem"].split()[0])) * 1024
            reading = {"peak": int(fields["VmHWM"].split()[0]) * 1024, "current": current}
            if reset:
                self.measuring, self.faults_at_reset = True, faults
                self.lowest_seen, self.own_at_reset, self.lowest_own = current, own, own
            else:
                reading["lowest"] = min(self.lowest_seen, current)
                reading["given_back"] = max(self.own_at_reset - min(self.lowest_own, own), 0)
                reading["faulted"] = (faults - self.faults_at_reset) * PAGE
                reading["touched"] = self._touched()
            return reading
        except (OSError, KeyError, ValueError, IndexError):
            return {"peak": None}

    def _faults(self) -> int:
        with open(f"/proc/{self.process}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[7]) + int(fields[9])  # minflt and majflt of the whole process

    def _touched(self) -> int | None:
        """Bytes referenced since the referenced bits were cleared, over every mapping that may hold data
        the answer made (:func:`_may_hold_answer_data`), however small (a tensor can be spread over many
        small mappings); None: unreadable (a submission that made itself non-dumpable) or too long to
        read (``SMAPS_BYTES``, ``SMAPS_SECONDS``).  The grader allows for what the call's own plumbing touches (``touched_allowance``)."""
        total, counted, referenced, size = 0, False, 0, 0
        deadline = time.monotonic() + SMAPS_SECONDS
        try:
            read_only = _read_only_devices(self.process)
            with open(f"/proc/{self.process}/smaps") as f:
                for line in f:
                    size += len(line)
                    if size > SMAPS_BYTES or (size & 0xFFFF < len(line) and time.monotonic() > deadline):
                        return None  # tens of thousands of mappings, made to make this reading slow: not measured
                    if _MAPPING.match(line):
                        counted = _may_hold_answer_data(line, self.libraries, read_only)
                    elif line.startswith("Referenced:"):
                        referenced = int(line.split()[1])
                        total += referenced if counted else 0
                    elif not counted and line.startswith("Anonymous:"):
                        # A library's pages that were written (made writable, filled, made read-only again)
                        # are anonymous now: those count wherever they are.
                        total += min(referenced, int(line.split()[1]))
        except OSError:
            return None
        return total * 1024

    def sample(self) -> None:
        """One reading of the resident memory, and of the process's own part of it, while a measured call runs."""
        try:
            with open(f"/proc/{self.process}/status", "rb") as f:
                text = f.read()
            # keys at the start of a line: the first line, "Name:", is the process's own choice
            resident, anon, shmem = (int(text[text.index(key) + len(key):text.index(b"kB", text.index(key))]) * 1024
                                     for key in (b"\nVmRSS:", b"\nRssAnon:", b"\nRssShmem:"))
        except (OSError, ValueError):
            return
        self.lowest_seen = min(self.lowest_seen, resident)
        self.lowest_own = min(self.lowest_own, anon + shmem)

    def kill(self) -> None:
        """Kill the submission's whole tree and wait until none of it is left.  What its processes read from
        storage (not from the page cache) is added up, as each is reaped, in ``disk_blocks``."""
        if self.isolator is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.isolator, signal.SIGKILL)
            _, status, usage = os.wait4(self.isolator, 0)
            self.disk_blocks += usage.ru_inblock
            if self.status is None:
                self.status = status
        me = os.getpid()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):  # orphans come to us (subreaper): reap them
                while (reaped := os.wait4(-1, os.WNOHANG))[0]:
                    dead = [k for k, (pid, _) in self.preparers.items() if pid == reaped[0]]
                    for key in dead:
                        self.preparers.pop(key)[1].close()  # a preparer died: its pid must not stay exempt
                    self.disk_blocks += 0 if dead else reaped[2].ru_inblock
            keep = {1, me, *(pid for pid, _ in self.preparers.values())}
            left = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in keep] if self.own_namespace else []
            if self.process is not None and os.path.exists(f"/proc/{self.process}"):
                left.append(self.process)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        self.isolator = self.process = None
        self.measuring = False

    def reap(self) -> bool:
        """True when the submission's isolator has exited on its own (the submission died)."""
        if self.isolator is None:
            return False
        done, status, usage = os.wait4(self.isolator, os.WNOHANG)
        if not done:
            return False
        self.status, self.isolator = status, None
        self.disk_blocks += usage.ru_inblock
        return True

    def serve(self) -> int:
        self.reply({"zygote": True, "pid": os.getpid()})
        while True:
            ready, _, _ = select.select([self.control], [], [], 0.001 if self.measuring else 0.05)
            if self.measuring:
                self.sample()
            if not ready:
                if self.reap():
                    self.kill()
                    self.reply({"finished": True, "status": self.status, "died": True, "disk_read_bytes": self.disk_blocks * 512})
                continue
            request, fds = protocol.receive_with_fds(self.control)
            if request is None:
                self.kill()
                return 0
            op = request.get("op")
            if op == Op.BEGIN.value:
                self.status, self.disk_blocks = None, 0
                self.begin(request, fds)
            elif op == Op.INTERRUPT.value:
                self.interrupt()
            elif op == Op.PREPARE.value:
                self.prepare(request)
            elif op == Op.PEAK.value:
                self.reply(self.peak(bool(request.get("reset"))))
            elif op == Op.KILL.value:
                died = self.reap()
                self.kill()
                self.reply({"finished": True, "status": self.status or 0, "died": died, "disk_read_bytes": self.disk_blocks * 512})


def _share_mathtext_layouts() -> None:
    """Let every figure reuse the mathtext layouts any figure made before it.

    Matplotlib caches a parsed ``$...$`` string per parser, and each new figure's renderer has a parser of
    its own: every log-axis tick label (``$\\mathdefault{10^{-6}}$``) is parsed again, about 15 ms each, for
    every figure, twice when the figure is laid out at one resolution and saved at another.  One notebook-03
    figure spent 0.4 s of its 0.6 s there.  Keyed on everything a layout depends on except which parser
    asked, the cache is filled once in the zygote (:func:`_warm_up`) and inherited by every submission.
    A layout is read-only once made (the renderer copies its image), so sharing it changes no pixel.
    """
    import functools

    from matplotlib.mathtext import MathTextParser

    parse = MathTextParser._parse_cached.__wrapped__
    parsers = {kind: MathTextParser(kind) for kind in ("path", "agg")}

    @functools.lru_cache(4096)
    def shared(output_type, s, dpi, prop, antialiased, load_glyph_flags):
        parser = parsers["path" if output_type == "vector" else "agg"]
        return parse(parser, s, dpi, prop, antialiased, load_glyph_flags)

    def cached(self, s, dpi, prop, antialiased, load_glyph_flags):
        return shared(self._output_type, s, dpi, prop, antialiased, load_glyph_flags)

    MathTextParser._parse_cached = cached


def _warm_up() -> None:
    """Draw once what the course's figures draw and run the layers its cells run, before any fork.

    Matplotlib loads its fonts, builds its mathtext parser and fills its glyph caches on the first
    figure it renders (about 0.2 s); torch sets up its kernels on first use.  Done here, every
    submission process inherits the result instead of paying for it again.  The log axes span
    10^-12 to 10^12, so that the tick labels of any log plot of the course are parsed already, at the
    resolution a figure is laid out at and the one it is captured at.
    """
    import matplotlib.pyplot as plt
    import torch

    import attnkit

    wide = torch.logspace(-12, 12, 25)
    for span in ((0, 25), (0, 13), (12, 25), (6, 19)):  # every decade as an end and inside a range: ticks differ
        fig, axes = plt.subplots(figsize=(4, 3))
        axes.loglog(wide[span[0]:span[1]], wide[span[0]:span[1]])
        fig.tight_layout()
        _capture_figures(None)
    x = torch.logspace(-6, 4, 12)
    attnkit.show_heatmaps(torch.softmax(x.log().reshape(1, 3, 4), dim=-1), titles=["warm"], suptitle="warm")
    fig, (log_axes, bars) = plt.subplots(1, 2, figsize=(5, 3))
    log_axes.loglog(x, x, "o-", label=r"$\mathbf{q}^\top\mathbf{k}/\sqrt{d}$, $A'_2$")
    log_axes.set(xlabel="d", ylabel="variance", title="warm")
    log_axes.legend(fontsize=8)
    bars.bar(range(4), [0.1, 0.2, 0.3, 0.4])
    bars.set_xticks(range(4), [f"k{i}" for i in range(4)])
    fig.suptitle("warm")
    fig.tight_layout()
    _capture_figures(None)
    layer = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Dropout(0.1)).eval()
    with torch.no_grad():
        torch.bmm(layer(x.reshape(1, 3, 4)), x.reshape(1, 4, 3)).softmax(-1).var()
    _cache_mapped_files(torch)


def _cache_mapped_files(torch_module) -> None:
    """Read once, whole, every file this process has mapped, so that they are all in the page cache.

    A cell faults in only the library code it runs: on a machine that has not run the course yet, the first
    submissions would read megabytes of torch's code from storage, which is what the flag on reading from
    storage (``GradeOptions.disk_read_flag``) looks for.  About 580 MB, 0.6 s on a cold machine, 0.05 s on a
    warm one.  Without a GPU, the GPU libraries (about 2.5 GB of a CUDA build of torch) are left out: no
    answer can run their code."""
    gpu = torch_module.cuda.is_available()
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/") and not fields[5].rstrip().endswith("(deleted)"):
                paths.add(fields[5].rstrip("\n"))
    block = bytearray(1 << 20)
    for path in sorted(paths):
        if not gpu and ("/nvidia/" in path or "cuda" in os.path.basename(path)):
            continue
        with contextlib.suppress(OSError), open(path, "rb", buffering=0) as f:
            while f.readinto(block):
                pass


def main(control_fd: int, own_namespace: bool) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import torch
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401

    import attnkit  # noqa: F401 - every notebook imports it: pay for it once

    # The first TorchDispatchMode imports ~900 modules (sympy, ...): pay that once here, not in
    # every submission (attnkit.peak_memory, in a student's own run of a check, uses one).
    attnkit.peak_memory(lambda: torch.ones(1) + 1)
    protocol.pin_tensor_methods()  # before any student code: see protocol.plain_tensor
    _share_mathtext_layouts()
    _warm_up()
    _prctl(PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/<pid>/fd or mem of this process for the same uid
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # a submission's orphans are ours to reap and to count
    control = socket.socket(fileno=control_fd)
    return Zygote(control, torch, own_namespace).serve()


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe-own-proc"]:
        sys.exit(probe_own_proc())
    sys.exit(main(int(sys.argv[1]), "--own-pid-namespace" in sys.argv[2:]))
