"""The trusted side of the protocol: drive a sandboxed runner, and the stand-ins for students' objects.

:class:`Runner` starts :mod:`grading.sandboxed.runner` (one warm zygote per worker) and owns every
channel: the control socket to the zygote, and for each submission a fresh socket pair whose other
end goes to that submission's process alone.  A reply that arrives on a submission channel is never
taken for the zygote's word ("finished" comes only on the control socket), so a submission cannot
end itself early, speak for the next one or hide its death.

Values come back through ``torch.load(weights_only=True)`` and are checked before any grade cell
sees them (:func:`checked`): plain tensors only, contiguous, within the byte limits of one reply
and of one grade cell.  Anything else (a function, a class, a module) is a :class:`RemoteObject`:
calls and attribute reads go back to the sandbox; it is never taken for a torch type.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import select
import socket
import subprocess
import sys
import time

import torch

from grading.execution.sandbox import Sandbox, environment
from grading.options import GradeOptions
from grading.sandboxed import protocol
from grading.sandboxed.protocol import HANDLE, Op


class RunnerError(RuntimeError):
    """The runner or the submission died, hung or broke the protocol; ``reason`` says which."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RunnerInterrupted(RunnerError):
    """A request ran past its time limit and was interrupted (SIGINT); the submission goes on."""


class StudentError(Exception):
    """Mixed into exceptions raised by the student's code in the sandbox (type kept, text the student's)."""


class LimitExceeded(Exception):
    """A grade cell fetched more data than it may."""


_student_types: dict[str, type] = {}


def _student_exception(reply: dict) -> Exception:
    name, message = str(reply.get("raised", "Exception")), str(reply.get("message", ""))
    known = getattr(builtins, name, None)
    base = known if isinstance(known, type) and issubclass(known, Exception) else Exception
    cls = _student_types.get(name)
    if cls is None:  # shown as the student's own exception (module "sandbox"), not as the grader's
        cls = _student_types[name] = type(name if base is not Exception else "StudentException", (StudentError, base),
                                          {"__module__": "sandbox"})
    try:
        exc = cls(message)
    except Exception:  # an exception type with a special constructor
        exc = type("StudentException", (StudentError,), {"__module__": "sandbox"})(f"{name}: {message}")
    exc.student_type = name
    return exc


def describe_status(status: int) -> str:
    """The isolator's wait status: the submission process's exit code, or 128 + its signal."""
    code = os.waitstatus_to_exitcode(status) if status else 0
    if code < 0 or code > 128:
        sig = -code if code < 0 else code - 128
        names = {9: "SIGKILL: memory or CPU limit, or killed", 11: "SIGSEGV: segmentation fault", 6: "SIGABRT",
                 24: "SIGXCPU: CPU time limit"}
        return f"killed by signal {sig} ({names.get(sig, 'signal')})"
    return f"the process exited with status {code}"


class Runner:
    """One worker's zygote (sandboxed unless ``sandbox`` is None); serves submissions one after another."""

    def __init__(self, sandbox: Sandbox | None, options: GradeOptions) -> None:
        self.sandbox = sandbox
        self.options = options
        self.deadline: float | None = None  # monotonic time by which the current cell's requests must be answered
        self.prepared: dict[str, list[dict]] = {}  # key of the course's first cells -> their replies (see prepare)
        self.channel: socket.socket | None = None
        self.disk_read_bytes = 0  # what the last submission read from storage, as the zygote's "finished" says
        self.control, theirs = socket.socketpair()
        argv = [sys.executable, "-m", "grading.sandboxed.runner", str(theirs.fileno())]
        if sandbox is not None:
            argv.append("--own-pid-namespace")
        cmd = sandbox.wrap(argv) if sandbox is not None else argv
        cwd = None
        if sandbox is None:  # unconfined: a private working folder of its own
            import tempfile

            self._scratch = tempfile.TemporaryDirectory(prefix="attn-unsandboxed-")
            cwd = self._scratch.name
        self.proc = subprocess.Popen(
            cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=environment(options.threads, sandbox is not None), cwd=cwd,
            start_new_session=True,
        )
        theirs.close()
        started = time.monotonic()
        hello = self._control_reply(options.startup_timeout)
        if not hello.get("zygote"):
            raise RunnerError("runner did not start", str(hello)[:200])
        self.start_seconds = time.monotonic() - started

    # ------------------------------------------------------------------ transport
    def _read(self, sock: socket.socket, size: int, deadline: float) -> bytes:
        chunks, remaining = [], size
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunnerError("timeout")
            ready, _, _ = select.select([sock], [], [], min(left, 1.0))
            if not ready:
                if self.proc.poll() is not None:
                    raise RunnerError("runner died", self._exit_detail())
                continue
            chunk = sock.recv(min(remaining, 1 << 20))
            if not chunk:
                raise RunnerError("closed")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _frame(self, sock: socket.socket, deadline: float, limit: int) -> dict:
        (size,) = protocol.HEADER.unpack(self._read(sock, protocol.HEADER.size, deadline))
        if size > limit:
            raise RunnerError("protocol", f"a reply larger than its limit of {limit} bytes")  # (its size is the sender's choice)
        try:
            message = protocol.loads(self._read(sock, size, deadline))
        except protocol.ProtocolError as exc:
            raise RunnerError("protocol", str(exc)) from exc
        if sock is self.control and message.get("finished"):
            self.disk_read_bytes = int(message.get("disk_read_bytes") or 0)
        return message

    def _control_reply(self, timeout: float) -> dict:
        try:
            return self._frame(self.control, time.monotonic() + timeout, 1 << 20)
        except RunnerError:
            self.close()
            raise

    def _control(self, message: dict) -> None:
        try:
            self.control.sendall(protocol.frame(message))
        except OSError as exc:
            raise RunnerError("runner died", self._exit_detail()) from exc

    def _exit_detail(self) -> str:
        code = self.proc.poll()
        if code is None:
            return ""
        if self.sandbox is not None and self.sandbox.memory_exceeded():
            return "out of memory (the sandbox's memory limit)"
        err = b""
        with contextlib.suppress(Exception):
            err = self.proc.stderr.read(2000) if self.proc.stderr else b""
        tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
        return (f"killed by signal {-code}" if code < 0 else f"exit status {code}") + (f" ({tail[0][:200]})" if tail else "")

    # ------------------------------------------------------------------ submissions
    def prepare(self, cells: tuple[str, ...]) -> str | None:
        """Have the zygote run the course's first ``cells`` once (in a preparer of its own); their replies then
        stand for every submission's run of them.  The key to begin from, or None when they did not run."""
        key = hashlib.sha256("\0".join(cells).encode()).hexdigest()[:32]
        if key in self.prepared:
            return key
        self._control({"op": Op.PREPARE.value, "key": key, "cells": list(cells)})
        try:
            reply = self._frame(self.control, time.monotonic() + self.options.startup_timeout, protocol.MAX_PREPARED)
        except RunnerError:
            self.close()
            raise
        replies = reply.get("prepared")
        if not isinstance(replies, list) or len(replies) != len(cells) or not all(isinstance(r, dict) for r in replies):
            return None
        self.prepared[key] = replies
        return key

    def begin(self, first_cells: tuple[str, ...] = ()) -> list[dict]:
        """A fresh, isolated process for the next submission, reachable only through a new channel.

        With ``first_cells`` (the course's cells before the first answer, unchanged in this submission) the
        process starts from their state, run once per zygote, and their replies are returned: the caller
        uses them instead of running those cells.  Otherwise (or when they could not be prepared) it
        starts from nothing and the list is empty."""
        key = self.prepare(first_cells) if first_cells else None
        ours, theirs = socket.socketpair()
        limits = self.options.limits
        self.disk_read_bytes = 0
        message = {"op": Op.BEGIN.value, "prepared": key, "limits": {
            "memory_bytes": limits.memory_bytes, "cpu_seconds": limits.cpu_seconds,
            "scratch_bytes": limits.scratch_bytes, "reply_bytes": self.options.reply_bytes,
        }}
        try:
            protocol.send_with_fds(self.control, message, [theirs.fileno()])
        except OSError as exc:
            raise RunnerError("runner died", self._exit_detail()) from exc
        finally:
            theirs.close()
        started = self._control_reply(self.options.startup_timeout)
        if started.get("unprepared"):  # its preparer is gone: this submission runs every cell itself
            ours.close()
            self.prepared.pop(key, None)
            return self.begin()
        problems = started.get("problems") or []
        if self.sandbox is not None and problems:
            ours.close()
            self.kill()
            raise RunnerError("isolation failed", "; ".join(str(p) for p in problems)[:500])
        self.channel = ours
        ready = self._reply(self.options.startup_timeout)
        if not ready.get("ready"):
            raise RunnerError("protocol", "the submission process did not start")
        if self.sandbox is not None and ready.get("problems"):
            self.kill()
            raise RunnerError("isolation failed", "; ".join(str(p) for p in ready["problems"])[:500])
        return self.prepared[key] if key is not None else []

    def _reply(self, timeout: float) -> dict:
        """The submission's reply, unless the zygote reports first that the submission is gone."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunnerError("timeout")
            ready, _, _ = select.select([self.channel, self.control], [], [], min(left, 1.0))
            if self.control in ready:
                news = self._frame(self.control, time.monotonic() + 5, 1 << 20)
                if news.get("finished"):
                    self._close_channel()
                    raise RunnerError("kernel died", describe_status(int(news.get("status") or 0)))
                continue
            if self.channel in ready:
                try:
                    return self._frame(self.channel, deadline, self.options.reply_bytes + (1 << 20))
                except RunnerError as exc:
                    if exc.reason == "closed":  # the submission closed its end: it is dying
                        news = self._control_reply(10)
                        self._close_channel()
                        raise RunnerError("kernel died", describe_status(int(news.get("status") or 0))) from None
                    if exc.reason == "protocol":
                        self.kill()
                    raise
            if self.proc.poll() is not None:
                raise RunnerError("runner died", self._exit_detail())

    def request(self, message: dict, timeout: float) -> dict:
        """Send a request to the submission and wait ``timeout`` seconds for the reply.

        Past the limit the submission is interrupted (SIGINT) and has ``interrupt_grace`` seconds to
        answer: then :class:`RunnerInterrupted` (the submission goes on); else its whole process
        tree is killed and ``RunnerError("timeout")`` says it did not respond to the interrupt.
        """
        if self.channel is None:
            raise RunnerError("kernel died", "the submission is no longer running")
        if self.deadline is not None:  # every request of a cell shares the cell's time, however many it makes
            timeout = min(timeout, max(self.deadline - time.monotonic(), 0.01))
        try:
            self.channel.sendall(protocol.frame(message))
        except OSError:
            news = self._control_reply(10)
            self._close_channel()
            raise RunnerError("kernel died", describe_status(int(news.get("status") or 0))) from None
        try:
            return self._reply(timeout)
        except RunnerError as exc:
            if exc.reason != "timeout":
                raise
        self._control({"op": Op.INTERRUPT.value})
        try:
            self._reply(self.options.interrupt_grace)
        except RunnerError as exc:
            if exc.reason == "timeout":
                self.kill()
                raise RunnerError("timeout", "did not respond to an interrupt") from None
            raise
        raise RunnerInterrupted("interrupted", f"ran for more than {timeout:.0f} s and was interrupted")

    def peak(self, reset: bool) -> dict:
        """The submission process's peak resident memory, measured by the zygote (reset: start anew)."""
        self._control({"op": Op.PEAK.value, "reset": reset})
        while True:
            try:
                reply = self._control_reply(10)
            except RunnerError as exc:
                if exc.reason != "timeout":
                    raise
                raise RunnerError("runner died", "a memory reading took more than 10 s; the sandbox was restarted") from None
            if reply.get("finished"):
                self._close_channel()
                raise RunnerError("kernel died", describe_status(int(reply.get("status") or 0)))
            if "peak" in reply:
                return reply

    def kill(self) -> None:
        """End the current submission: its whole tree is killed, and confirmed gone, before this returns."""
        if self.channel is not None:
            with contextlib.suppress(OSError):
                self.channel.sendall(protocol.frame({"op": Op.END.value}))
        self._close_channel()
        if self.proc.poll() is not None:
            return
        self._control({"op": Op.KILL.value})
        while not self._control_reply(30).get("finished"):
            pass

    end = kill

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def close(self) -> None:
        self._close_channel()
        with contextlib.suppress(OSError):
            self.control.close()
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        if self.sandbox is not None:
            self.sandbox.cleanup()
        if getattr(self, "_scratch", None) is not None:
            self._scratch.cleanup()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


# ------------------------------------------------------------------------------------------ values


MAX_ITEMS = 200_000  # list, tuple and dict entries one grade cell may receive (shared references count each time)
# Inputs of a call that a memory check could measure: its tensor arguments hold at least this many bytes
# (the course's measured calls pass 264 KiB and more; its other calls a few KiB at most).  Such a call, in a
# cell that measures, starts as the measured call does: resetting costs about 8 ms a call, so small calls,
# which hold no tensor the check could notice, are left alone.
MEASURED_INPUTS = 64 << 10


def _tensor_bytes(value, depth: int = 0) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if depth < 4 and isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, depth + 1) for v in value)
    if depth < 4 and isinstance(value, dict):
        return sum(_tensor_bytes(v, depth + 1) for v in value.values())
    return 0


class Budget:
    """What a grade cell has fetched so far, against its limits; and what its calls did to their arguments."""

    def __init__(self, limit: int, write_back: bool = True, seconds: float | None = None, measuring: bool = False) -> None:
        self.limit, self.used, self.items = limit, 0, 0
        self.mutations: list[str] = []
        # Visible checks see a call change its arguments, as in the notebook; hidden checks only note it: their
        # own tensors stay as they built them (a call that zeroed them must not change the expected values).
        self.write_back = write_back
        # A cell that measures memory (attnkit.peak_memory) starts every large call of its own as a measured
        # call starts, so that no such call can tell from inside whether it is the measured one.
        self.measuring = measuring
        self.deadline = time.monotonic() + seconds if seconds is not None else None  # the whole grade cell's time

    def seconds_left(self, timeout: float) -> float:
        """The time one request may take: its own limit, within what is left of the grade cell's."""
        if self.deadline is None:
            return timeout
        left = self.deadline - time.monotonic()
        if left <= 0:  # as if the call had been interrupted at the cell's limit
            raise RunnerInterrupted("timeout", "the check cell's time ran out")
        return min(timeout, left)

    def charge(self, nbytes: int, items: int = 0) -> None:
        self.used += nbytes
        self.items += items
        if self.used > self.limit:
            raise LimitExceeded(f"the check fetched more than {self.limit / 2**20:.0f} MiB of data from the notebook")
        if self.items > MAX_ITEMS:
            raise LimitExceeded(f"the check received more than {MAX_ITEMS} values from the notebook")


def checked(value, budget: Budget, depth: int = 0):
    """A received value made safe for trusted code: plain, contiguous tensors within the byte budget."""
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor or value.layout != torch.strided or value.is_quantized:
            raise LimitExceeded("the notebook sent a tensor of an unexpected kind")
        if vars(value):  # attributes of its own (torch.load restores them) would shadow its methods here: t.detach = ...
            raise LimitExceeded("the notebook sent a tensor with attributes of its own")
        nbytes = value.numel() * value.element_size()
        budget.charge(nbytes)
        if value.untyped_storage().nbytes() < nbytes or not value.is_contiguous():
            value = value.contiguous()  # within budget: a materialised copy, never a stride trick
        return value
    if depth > 6:
        raise LimitExceeded("the notebook sent a value nested too deeply")
    if isinstance(value, torch.Size):
        return value
    if isinstance(value, (list, tuple, dict)):
        budget.charge(0, len(value) + 1)  # before walking it: repeated references must not multiply the work
    if isinstance(value, list):
        return [checked(v, budget, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(checked(v, budget, depth + 1) for v in value)
    if isinstance(value, dict):
        return {str(k): checked(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, str):
        budget.charge(len(value))
    return value


class RemoteObject:
    """A stand-in for an object living in the sandbox. Calls and attribute reads go there."""

    __slots__ = ("_runner", "_handle", "_kind", "_callable", "_timeout", "_budget")

    def __init__(self, runner: Runner, spec: dict, timeout: float, budget: Budget) -> None:
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_handle", int(spec[HANDLE]))
        object.__setattr__(self, "_kind", str(spec.get("kind", "object"))[:80])
        object.__setattr__(self, "_callable", bool(spec.get("callable", False)))
        object.__setattr__(self, "_timeout", timeout)
        object.__setattr__(self, "_budget", budget)

    def _ask(self, message: dict) -> dict:
        reply = self._runner.request({**message, "handle": self._handle}, self._budget.seconds_left(self._timeout))
        if "raised" in reply:
            raise _student_exception(reply)
        return reply

    def _value(self, value):
        return decode(self._runner, checked(value, self._budget), self._timeout, self._budget)

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return self._value(self._ask({"op": Op.GETATTR.value, "attr": attr})["value"])

    def __setattr__(self, attr: str, value) -> None:
        raise TypeError("grade cells may not modify the student's objects; pass values to calls instead")

    def _call(self, args, kwargs, reset: bool = True):
        if reset and self._budget.measuring and _tensor_bytes((args, kwargs)) >= MEASURED_INPUTS:
            self._runner.peak(reset=True)  # what a measured call starts with: a fresh peak, every page unreferenced
        reply = self._ask({"op": Op.CALL.value, "args": encode(args), "kwargs": encode(kwargs)})
        self._compare_arguments(args, kwargs, reply.get("after"))
        return self._value(reply["value"])

    def _compare_arguments(self, args, kwargs, after) -> None:
        """Decide here whether the call changed its tensor arguments, from their final state sent back.

        The sandbox reports every tensor argument as it is after the call (or its SHA-256 when large) and this
        process compares it with what it sent: no verdict on mutation is made where the answer runs.  A
        changed argument is recorded, and (``write_back``) our copy changes the same way, as in the notebook.
        """
        after = after if isinstance(after, dict) else {}
        for path, target in protocol.tensor_arguments(args, kwargs).items():  # named by the grader, not the sandbox
            where = f"argument {int(path[1:]) + 1}" if path[0] == "a" else f"argument `{path[1:]}`"
            final = after.get(path)
            if isinstance(final, dict) and set(final) == {"digest", "shape", "dtype"}:
                unchanged, final = final == protocol.tensor_digest(target), None
            else:
                final = checked(final, self._budget)
                unchanged = (isinstance(final, torch.Tensor) and final.shape == target.shape and final.dtype == target.dtype
                             and torch.equal(protocol.tensor_bytes(final), protocol.tensor_bytes(target)))  # NaN == NaN
            if unchanged:
                continue
            self._budget.mutations.append(f"the call changed its {where} in place")
            if self._budget.write_back and isinstance(final, torch.Tensor):
                with torch.no_grad():
                    if final.shape == target.shape and final.dtype == target.dtype:
                        target.copy_(final.to(target.device))
                    else:
                        target.data = final.to(target.device)

    def __call__(self, *args, **kwargs):
        return self._call(args, kwargs)

    def __remote_call__(self, *args, **kwargs):
        """Call in the sandbox and measure its peak memory from outside: (value, peak bytes above the start).

        Used by :func:`attnkit.peak_memory` in grade cells: the zygote reads the submission
        process's resident memory, so every allocation counts (torch, numpy, anything), and
        nothing the student's code does can switch the measurement off.  What the call needed is the
        largest of: its peak above the resident memory at the start, its peak above the lowest resident
        memory seen during the call (memory kept between calls and given back during one hides nothing),
        what the process gave back of its own memory (anonymous and shared) during the call, whatever file
        pages took its place,
        the bytes of the pages it faulted in, and the memory it read or wrote beyond what the call's own
        plumbing touches (a buffer made before the call and filled during it).  A reading that fails (the
        process made itself unreadable, or its main thread left) fails the check: it never passes unmeasured.
        """
        start = self._runner.peak(reset=True)
        try:
            value = self._call(args, kwargs, reset=False)
        finally:
            end = self._runner.peak(reset=False)
        if start.get("peak") is None or end.get("peak") is None or end.get("touched", 0) is None:
            raise LimitExceeded("the call's memory could not be measured: the answer's process made its memory map "
                                "unreadable or too long to read, or ended its main thread")
        peak = int(end["peak"])
        floor = min(int(start.get("current") or start["peak"]), int(end.get("lowest", peak)))
        touched = int(end.get("touched") or 0) - self._runner.options.touched_allowance
        return value, max(peak - floor, int(end.get("given_back", 0)), int(end.get("faulted", 0)), touched, 0)

    __remote_call__.__doc__ = __remote_call__.__doc__

    def __repr__(self) -> str:
        return f"<student's {self._kind}>"


def encode(value):
    if isinstance(value, RemoteObject):
        return {HANDLE: object.__getattribute__(value, "_handle")}
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").as_subclass(torch.Tensor)
    if isinstance(value, (list, tuple)):
        items = [encode(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(runner: Runner, value, timeout: float, budget: Budget):
    if isinstance(value, dict) and HANDLE in value:
        return RemoteObject(runner, value, timeout, budget)
    if isinstance(value, dict):
        return {k: decode(runner, v, timeout, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(runner, v, timeout, budget) for v in value]
    if isinstance(value, tuple) and not isinstance(value, torch.Size):
        return tuple(decode(runner, v, timeout, budget) for v in value)
    return value
