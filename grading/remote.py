"""The trusted side of grading: drive a sandboxed runner and decide verdicts in our own process.

:class:`Runner` starts :mod:`grading.runner` (a warm "zygote") inside the sandbox and asks it
for one fresh child per submission. :func:`run_cells` then walks the graded notebook:

* student cells (answers, "try it" cells) run only in the sandbox;
* trusted cells (the set-up cell and locked, given code) run in the sandbox *and* here;
* grade cells run here, in a namespace where every name the notebook defined in the
  sandbox is fetched at that moment: data (tensors, numbers, tuples) by value, anything
  else (a function, a class, a module) as a :class:`RemoteObject` whose calls run in the
  sandbox and whose results come back as plain tensors (``torch.load(weights_only=True)``).

The comparison itself (``check_close``, ``assert``, ``torch.allclose``) therefore uses this
process's torch and builtins, which the student's code never touches.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import io
import os
import select
import struct
import symtable
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from IPython.core.inputtransformer2 import TransformerManager

from grading.sandbox import Limits, Sandbox
from grading.template import used_and_bound

RUNNER = Path(__file__).with_name("runner.py")
MAX_FRAME = 512 * 1024**2
_transform = TransformerManager().transform_cell


class RunnerError(RuntimeError):
    """The sandboxed runner died, hung or broke the protocol; ``reason`` says which."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class RunnerInterrupted(RunnerError):
    """A request ran past its time limit and was interrupted (SIGINT); the runner is still usable."""


class RemoteRaised(Exception):
    """An exception raised by the student's code in the sandbox, re-raised here by name."""


def _remote_exception(reply: dict) -> Exception:
    name, message = reply.get("raised", "Exception"), reply.get("message", "")
    known = getattr(builtins, name, None)
    if isinstance(known, type) and issubclass(known, Exception) and known is not RemoteRaised:
        try:
            return known(message)
        except Exception:  # an exception type with a special constructor
            pass
    return RemoteRaised(f"{name}: {message}")


class Runner:
    """One sandboxed zygote; serves submissions one after another."""

    def __init__(self, sandbox: Sandbox | None, limits: Limits = Limits(), start_timeout: float = 120, threads: int = 1) -> None:
        self.sandbox = sandbox
        self.limits = limits
        req_r, self._req_w = os.pipe()
        self._rep_r, rep_w = os.pipe()
        ctl_r, self._ctl_w = os.pipe()
        argv = [sys.executable, str(RUNNER), str(req_r), str(rep_w), str(ctl_r)]
        cmd = sandbox.wrap(argv) if sandbox is not None else argv
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "JUPYTER_TOKEN"))}
        env.update({"MPLBACKEND": "Agg", "NBGRADER_EXECUTION": "autograde", "PYTHONDONTWRITEBYTECODE": "1"})
        if threads:  # parallel workers share the cores: one thread each by default
            env.update({var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
        cwd = sandbox.scratch if sandbox is not None else None
        self.proc = subprocess.Popen(
            cmd, pass_fds=(req_r, rep_w, ctl_r), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True,
        )
        for fd in (req_r, rep_w, ctl_r):
            os.close(fd)
        self.in_submission = False
        started = time.monotonic()
        hello = self._receive(start_timeout)
        if not hello.get("zygote"):
            raise RunnerError("runner did not start", str(hello))
        self.start_seconds = time.monotonic() - started

    # ------------------------------------------------------------------ transport
    def _send(self, message: dict, fd: int | None = None) -> None:
        fd = self._req_w if fd is None else fd
        buf = io.BytesIO()
        torch.save(message, buf)
        data = buf.getvalue()
        try:
            os.write(fd, struct.pack(">Q", len(data)))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except (BrokenPipeError, OSError) as exc:
            raise RunnerError("kernel died", self._exit_detail()) from exc

    def _read_exact(self, size: int, deadline: float) -> bytes:
        chunks, remaining = [], size
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunnerError("timeout")
            ready, _, _ = select.select([self._rep_r], [], [], min(left, 1.0))
            if not ready:
                if self.proc.poll() is not None:
                    raise RunnerError("kernel died", self._exit_detail())
                continue
            chunk = os.read(self._rep_r, min(remaining, 1 << 20))
            if not chunk:
                raise RunnerError("kernel died", self._exit_detail())
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        try:
            return self._receive_frame(deadline)
        except RunnerError as exc:
            if exc.reason in ("timeout", "protocol"):
                self.close()  # a hung or misbehaving sandbox cannot be reused: kill all of it
            raise

    def _receive_frame(self, deadline: float) -> dict:
        (size,) = struct.unpack(">Q", self._read_exact(8, deadline))
        if size > MAX_FRAME:
            raise RunnerError("protocol", f"reply of {size} bytes")
        payload = self._read_exact(size, deadline)
        try:
            reply = torch.load(io.BytesIO(payload), weights_only=True)
        except Exception as exc:  # a forged or corrupt frame: never unpickled beyond tensors
            raise RunnerError("protocol", f"unreadable reply ({type(exc).__name__})") from exc
        if not isinstance(reply, dict):
            raise RunnerError("protocol", "reply is not a dict")
        return reply

    def _exit_detail(self) -> str:
        code = self.proc.poll()
        if code is None:
            return ""
        if self.sandbox is not None and self.sandbox.memory_exceeded():
            return "out of memory (the sandbox's memory limit)"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exit status {code}"

    def request(self, message: dict, timeout: float, grace: float = 5.0) -> dict:
        """Send a request to the submission's child and wait ``timeout`` seconds for the reply.

        Past the limit the child is interrupted (SIGINT) and has ``grace`` seconds to answer:
        then :class:`RunnerInterrupted` (the runner goes on); else the whole sandbox is killed
        and ``RunnerError("timeout")`` says it did not respond to the interrupt.
        """
        self._send(message)
        try:
            reply = self._receive_frame(time.monotonic() + timeout)
        except RunnerError as exc:
            if exc.reason != "timeout":
                if exc.reason == "protocol":
                    self.close()
                raise
            self._send({"op": "interrupt"}, self._ctl_w)
            try:
                reply = self._receive_frame(time.monotonic() + grace)
            except RunnerError:
                self.close()
                raise RunnerError("timeout", "did not respond to an interrupt") from None
            self._check_alive(reply)
            raise RunnerInterrupted("interrupted", f"ran for more than {timeout:.0f} s and was interrupted") from None
        self._check_alive(reply)
        return reply

    def _check_alive(self, reply: dict) -> None:
        if reply.get("finished"):  # the zygote reports that the submission's child died
            self.in_submission = False
            raise RunnerError("kernel died", _describe_status(int(reply.get("status", 0))))

    # ------------------------------------------------------------------ submissions
    def begin(self, timeout: float = 60) -> None:
        self._send({"op": "begin", "limits": {"memory_bytes": self.limits.memory_bytes, "cpu_seconds": self.limits.cpu_seconds}}, self._ctl_w)
        reply = self._receive(timeout)
        if not reply.get("ready"):
            raise RunnerError("protocol", "child did not start")
        self.in_submission = True

    def end(self, timeout: float = 30) -> None:
        """Finish the current submission; the zygote kills its leftovers and wipes scratch."""
        if not self.in_submission:
            return
        self.in_submission = False
        self._send({"op": "end"})
        deadline = time.monotonic() + timeout
        while True:  # "ended" from the child (unless it died), then "finished" from the zygote
            reply = self._receive(max(deadline - time.monotonic(), 0.1))
            if reply.get("finished"):
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._ctl_w)
        with contextlib.suppress(OSError):
            os.close(self._req_w)
        with contextlib.suppress(OSError):
            os.close(self._rep_r)
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        if self.sandbox is not None:
            self.sandbox.cleanup()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        names = {9: "SIGKILL: memory or CPU limit, or killed", 11: "SIGSEGV: segmentation fault", 6: "SIGABRT", 24: "SIGXCPU: CPU time limit"}
        return f"killed by signal {sig} ({names.get(sig, 'signal')})"
    return f"the process exited with status {os.WEXITSTATUS(status)}"


class RemoteObject:
    """A stand-in for an object living in the sandbox. Calls and attribute reads go there."""

    __slots__ = ("_runner", "_handle", "_module", "_qualname", "_callable", "_timeout")

    def __init__(self, runner: Runner, spec: dict, timeout: float) -> None:
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_handle", spec["__handle__"])
        object.__setattr__(self, "_module", spec.get("module", ""))
        object.__setattr__(self, "_qualname", spec.get("qualname", ""))
        object.__setattr__(self, "_callable", spec.get("callable", False))
        object.__setattr__(self, "_timeout", timeout)

    def _ask(self, message: dict):
        reply = self._runner.request({**message, "handle": self._handle}, self._timeout)
        if "raised" in reply:
            raise _remote_exception(reply)
        return reply

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return decode(self._runner, self._ask({"op": "getattr", "attr": attr})["value"], self._timeout)

    def __setattr__(self, attr: str, value) -> None:
        raise TypeError("grade cells may not modify the student's objects; pass values to calls instead")

    def __call__(self, *args, **kwargs):
        reply = self._ask({"op": "call", "args": encode(args), "kwargs": encode(kwargs)})
        return decode(self._runner, reply["value"], self._timeout)

    def __remote_call__(self, *args, **kwargs):
        """Call in the sandbox, recording its intermediates: (value, largest storage, its shape).

        See attnkit.largest_intermediate. The student's process does the recording, so this
        observes *how* an answer computes, not a verdict; tampering with it is reported.
        """
        reply = self._ask({"op": "call", "args": encode(args), "kwargs": encode(kwargs), "record": True})
        value = decode(self._runner, reply["value"], self._timeout)
        return value, int(reply["largest_storage"]), tuple(reply["largest_shape"])

    @property
    def __class__(self):  # isinstance(proxy, nn.Linear) works for torch's own classes only
        if self._module.split(".")[0] == "torch":
            try:
                obj = importlib.import_module(self._module)
                for part in self._qualname.split("."):
                    obj = getattr(obj, part)
                if isinstance(obj, type):
                    return obj
            except Exception:
                pass
        return RemoteObject

    def __repr__(self) -> str:
        return f"<student's {self._qualname or 'object'}>"


def encode(value):
    if isinstance(value, RemoteObject):
        return {"__handle__": object.__getattribute__(value, "_handle")}
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").as_subclass(torch.Tensor)
    if isinstance(value, (list, tuple)):
        items = [encode(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(runner: Runner, value, timeout: float):
    if isinstance(value, dict) and "__handle__" in value:
        return RemoteObject(runner, value, timeout)
    if isinstance(value, dict):
        return {k: decode(runner, v, timeout) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(runner, v, timeout) for v in value]
    if isinstance(value, tuple) and not isinstance(value, torch.Size):
        return tuple(decode(runner, v, timeout) for v in value)
    return value


@dataclass
class Verdict:
    """The outcome of a grade cell run here: whether it raised, what it printed."""

    ok: bool = True
    ename: str = ""
    evalue: str = ""
    stdout: str = ""
    seconds: float = 0.0


@dataclass
class TrustedNamespace:
    """The grader's own namespace for a notebook: trusted cells and grade cells run here."""

    globals: dict = field(default_factory=lambda: {"__name__": "__main__"})

    def run_trusted(self, source: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(_transform(source), "<trusted cell>", "exec"), self.globals)  # noqa: S102


def global_reads(code: str) -> set[str]:
    """Names a cell reads from its global namespace: at top level, or as globals inside functions.

    A nested function's own locals (``q`` in ``def ref(q): ...``) are not included, so a
    student's global of the same name is not fetched for nothing.
    """
    names: set[str] = set()
    tables = [symtable.symtable(code, "<grade cell>", "exec")]
    while tables:
        table = tables.pop()
        top = table.get_type() == "module"
        names.update(s.get_name() for s in table.get_symbols() if s.is_referenced() and (top or s.is_global()))
        tables.extend(table.get_children())
    return names


def run_grade_cell(runner: Runner, ns: TrustedNamespace, source: str, timeout: float) -> Verdict:
    """Execute a grade cell here; student names resolve to values or RemoteObjects from the sandbox."""
    run = Verdict()
    start = time.monotonic()
    code = _transform(source)
    try:
        tree = ast.parse(code)
        loaded, stored = global_reads(code), used_and_bound(tree)[1]
        remote_names = set(runner.request({"op": "names"}, timeout).get("names", []))
        local = dict(ns.globals)
        for name in sorted(loaded & remote_names):
            if name in ns.globals and not isinstance(ns.globals[name], RemoteObject):
                continue  # trusted code defined it (set-up, given code, an earlier grade cell)
            reply = runner.request({"op": "get", "name": name}, timeout)
            if "raised" not in reply:
                local[name] = decode(runner, reply["value"], timeout)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(tree, "<grade cell>", "exec"), local)  # noqa: S102
        run.stdout = out.getvalue()
        for name in stored:  # what the cell defined stays, for later cells
            if name in local:
                ns.globals[name] = local[name]
    except RunnerError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the verdict: any exception fails the check
        if isinstance(exc, KeyboardInterrupt):
            raise
        run.ok = False
        run.ename = type(exc).__name__
        run.evalue = str(exc)
    run.seconds = time.monotonic() - start
    return run
