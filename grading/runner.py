"""The untrusted side of grading: runs inside the sandbox, executes a student's cells, answers requests.

Started once per grading worker (``python runner.py``, inside :mod:`grading.sandbox`), it
imports torch and IPython once ("zygote"), then for every submission forks a child that
starts from that warm but untouched state. The child executes the student's cells in a
fresh IPython shell and, between cells, answers the trusted grader's requests: "give me the
value of ``query121``", "call ``masked_softmax`` with these tensors", "get the attribute
``attention_weights`` of that object". It never sees a test's expected values and never
decides a verdict: the grader compares the returned tensors in its own process, so a
student who monkeypatches torch here changes nothing but their own outputs.

Protocol: frames of an 8-byte big-endian length and a ``torch.save`` payload (a dict), on
three pipe file descriptors given on the command line: requests for the child, replies (from
the child, and from the zygote between submissions), and control messages for the zygote
("begin" a submission, "interrupt" the running child with SIGINT). The grader reads replies with
``torch.load(weights_only=True)``, which cannot run code. The student's prints go to fd 1
and 2, captured per cell. Of the repository this file imports only ``attnkit`` (the helpers,
which the sandbox shows, as notebooks need them); the sandbox shows this file alone of grading/.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import resource
import select
import shutil
import signal
import struct
import sys
import traceback

REQUESTS, REPLIES, CONTROL = -1, -1, -1  # set from the command line
MAX_TEXT = 20_000  # characters of a cell's stdout/stderr sent back


def _read_frame(fd: int) -> bytes | None:
    header = _read_exact(fd, 8)
    if header is None:
        return None
    (size,) = struct.unpack(">Q", header)
    return _read_exact(fd, size)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_frame(fd: int, payload: bytes) -> None:
    data = struct.pack(">Q", len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Child:
    """One submission: a fresh IPython shell and the objects handed out to the grader."""

    def __init__(self, torch_module) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        self.torch = torch_module
        self.shell = InteractiveShell.instance()
        self.shell.user_ns["__name__"] = "__main__"
        self.handles: dict[int, object] = {}

    # ------------------------------------------------------------------ encoding
    def encode(self, value, depth: int = 0):
        torch = self.torch
        if value is None or isinstance(value, (bool, int, float, str, complex)):
            return value
        if isinstance(value, torch.Tensor):
            # A plain, detached CPU copy: no subclass, no hooks, no autograd graph.
            return value.detach().to("cpu").as_subclass(torch.Tensor).clone()
        if isinstance(value, (torch.dtype, torch.device, torch.Size)):
            return value
        if depth < 4 and isinstance(value, (list, tuple)) and len(value) <= 10_000:
            items = [self.encode(v, depth + 1) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        if depth < 4 and isinstance(value, dict) and all(isinstance(k, str) for k in value) and len(value) <= 10_000:
            return {k: self.encode(v, depth + 1) for k, v in value.items()}
        handle = len(self.handles) + 1
        self.handles[handle] = value
        cls = type(value)
        return {
            "__handle__": handle,
            "module": getattr(cls, "__module__", "") or "",
            "qualname": getattr(cls, "__qualname__", "") or "",
            "callable": callable(value),
        }

    def decode(self, value):
        if isinstance(value, dict):
            if set(value) == {"__handle__"}:
                return self.handles[value["__handle__"]]
            return {k: self.decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.decode(v) for v in value)
        return value

    # ------------------------------------------------------------------ operations
    def op_exec(self, request: dict) -> dict:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = self.shell.run_cell(request["source"], store_history=False, silent=False)
        error = result.error_before_exec or result.error_in_exec
        reply: dict = {"ok": error is None, "stdout": out.getvalue()[-MAX_TEXT:], "stderr": err.getvalue()[-MAX_TEXT:]}
        if error is not None:
            reply["ename"] = type(error).__name__
            reply["evalue"] = str(error)[:2000]
            reply["traceback"] = "".join(traceback.format_exception(error))[-MAX_TEXT:]
        return reply

    def op_names(self, request: dict) -> dict:
        hidden = set(self.shell.user_ns_hidden)
        return {"names": sorted(k for k in self.shell.user_ns if not k.startswith("_") and k not in hidden)}

    def op_get(self, request: dict) -> dict:
        return {"value": self.encode(self.shell.user_ns[request["name"]])}

    def op_getattr(self, request: dict) -> dict:
        return {"value": self.encode(getattr(self.handles[request["handle"]], request["attr"]))}

    def op_call(self, request: dict) -> dict:
        target = self.handles[request["handle"]]
        method = request.get("method")
        if method:
            target = getattr(target, method)
        args = self.decode(request.get("args", ()))
        kwargs = self.decode(request.get("kwargs", {}))
        with self.torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if request.get("record"):  # the same recorder grade cells use in-process
                from attnkit.checks import largest_intermediate

                value, elements, shape = largest_intermediate(target, *args, **kwargs)
            else:
                value = target(*args, **kwargs)
        reply = {"value": self.encode(value)}
        if request.get("record"):
            reply["largest_storage"], reply["largest_shape"] = elements, shape
        return reply

    def serve(self) -> None:
        _write_frame(REPLIES, _dump(self.torch, {"ready": True}))
        while True:
            try:
                frame = _read_frame(REQUESTS)
            except KeyboardInterrupt:  # an interrupt that arrived after the work it was meant for
                continue
            if frame is None:
                return
            request = self.torch.load(io.BytesIO(frame), weights_only=True)
            if request.get("op") == "end":
                _write_frame(REPLIES, _dump(self.torch, {"ended": True}))
                return
            try:
                reply = getattr(self, f"op_{request['op']}")(request)
            except BaseException as exc:  # the student's object raised: report it, keep serving
                reply = {"raised": type(exc).__name__, "message": str(exc)[:2000]}
            try:
                payload = _dump(self.torch, reply)
            except Exception as exc:  # an unserialisable value
                payload = _dump(self.torch, {"raised": "TypeError", "message": f"cannot send the value: {exc}"})
            _write_frame(REPLIES, payload)


def _dump(torch_module, obj) -> bytes:
    buf = io.BytesIO()
    torch_module.save(obj, buf)
    return buf.getvalue()


def _non_dumpable() -> None:
    """Forbid ptrace and /proc/<pid>/mem access to this process from its own uid."""
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:
        pass


def _wipe(folder: str) -> None:
    for entry in os.listdir(folder):
        path = os.path.join(folder, entry)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def _supervise(pid: int, torch_module) -> int:
    """Wait for the child, passing on "interrupt" requests (SIGINT) from the grader."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        ready, _, _ = select.select([CONTROL], [], [], 0.1)
        if ready:
            frame = _read_frame(CONTROL)
            if frame is None:  # the grader is gone
                os.kill(pid, signal.SIGKILL)
                continue
            if torch_module.load(io.BytesIO(frame), weights_only=True).get("op") == "interrupt":
                try:
                    os.kill(pid, signal.SIGINT)
                except ProcessLookupError:
                    pass


def zygote() -> int:
    """Import the heavy modules once, then fork one fresh child per submission."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import torch
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401

    import attnkit

    # The first TorchDispatchMode imports ~900 modules (sympy, ...): pay that once here, not in
    # every child (attnkit.largest_intermediate records with one in notebook 02's checks).
    attnkit.largest_intermediate(lambda: torch.ones(1) + 1)
    _non_dumpable()
    scratch = os.getcwd()
    _write_frame(REPLIES, _dump(torch, {"zygote": True, "pid": os.getpid()}))
    while True:
        frame = _read_frame(CONTROL)
        if frame is None:
            return 0
        request = torch.load(io.BytesIO(frame), weights_only=True)
        if request.get("op") != "begin":
            continue
        pid = os.fork()
        if pid == 0:
            try:
                os.close(CONTROL)
                os.setsid()
                signal.signal(signal.SIGINT, signal.default_int_handler)
                limits = request.get("limits", {})
                if limits.get("memory_bytes"):
                    resource.setrlimit(resource.RLIMIT_DATA, (limits["memory_bytes"], limits["memory_bytes"]))
                if limits.get("cpu_seconds"):
                    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"]))
                torch.manual_seed(0)
                Child(torch).serve()
            finally:
                os._exit(0)
        status = _supervise(pid, torch)
        # Whatever the submission left behind dies with it: every process of this PID
        # namespace but bwrap (pid 1) and us; then its files go.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(-1, signal.SIGKILL)
        _wipe(scratch)
        _wipe("/tmp")
        _write_frame(REPLIES, _dump(torch, {"finished": True, "status": status}))


if __name__ == "__main__":
    REQUESTS, REPLIES, CONTROL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    sys.exit(zygote())
