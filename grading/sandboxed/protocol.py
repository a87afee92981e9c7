"""The wire protocol between the grader and the sandboxed runner: one definition for both ends.

A frame is an 8-byte big-endian length followed by the payload, a dict of plain data.  Most
messages (cell outputs, names, handles) hold only JSON types (str, int, float, bool, None, lists,
dicts with str keys): they travel as ``J`` + JSON, about 20 times faster to read than the other
form.  Any other message (tuples, plain CPU tensors, dtypes, devices, sizes) travels as a
``torch.save`` payload, decoded with ``torch.load(weights_only=True)``, which builds no objects but
those.  Neither form can run code in the grader.  Frames larger than the reader's limit are refused
before they are read.

Channels (the grader creates and owns all of them):

* **control**, a Unix socket between the grader and the runner's zygote: ``prepare`` (the course's own
  first cells, to run once), ``begin`` (carrying the submission's channel as a file descriptor),
  ``interrupt``, ``kill``, ``peak``; the zygote answers ``prepared``, ``started``, ``finished`` and
  ``peak``.  No process that runs student code ever holds it.
* **preparer**, a Unix socket pair between the zygote and each of its prepared children (one per
  notebook's first cells): ``begin`` (carrying the submission's channel and the zygote's report pipe),
  answered ``forked``.  The zygote made it; the submission's processes close it before any of their code runs.
* **submission**, a Unix socket pair made fresh for each submission, between the grader and that
  submission's process: requests (:class:`Op`) and their replies.  It dies with the submission.
"""

from __future__ import annotations

import enum
import io
import json
import os
import socket
import struct
import zipfile

HEADER = struct.Struct(">Q")
MAX_TEXT = 20_000  # characters of a cell's stdout/stderr sent back
MAX_MESSAGE = 2_000  # characters of an exception message sent back
# Bytes of a call's tensor arguments sent back whole after it (larger: a SHA-256 each, see Submission.final_state)
AFTER_BYTES = 4 << 20
MAX_PREPARED = 16 << 20  # bytes of the replies of a notebook's first cells (their figures), on both hops
HANDLE = "__handle__"  # key of a value that stays in the sandbox (a function, a module, ...)


class Op(str, enum.Enum):
    """Requests.  The value is what travels on the wire."""

    # grader -> zygote (control channel)
    BEGIN = "begin"  # fork a fresh, isolated process for one submission (with its channel)
    INTERRUPT = "interrupt"  # SIGINT to the submission (a cell ran past its limit)
    KILL = "kill"  # end the submission: kill its whole process tree
    PEAK = "peak"  # reset ("reset": True) or read the submission's peak resident memory
    PREPARE = "prepare"  # run the course's own first cells once ("cells", "key"); submissions start from their state
    # grader -> submission (submission channel)
    EXEC = "exec"  # run a cell's source
    NAMES = "names"  # the names the notebook has defined
    GET = "get"  # the value of a name (plain data, or a handle)
    GETATTR = "getattr"  # an attribute of a handle
    CALL = "call"  # call a handle (or one of its methods) with plain arguments
    END = "end"  # the submission is over


class ProtocolError(RuntimeError):
    """A frame that is too large, truncated or not plain data."""


JSON = b"J"  # first byte of a JSON payload (a torch.save payload starts with b"PK", a zip archive)
# What one frame may build when it is read, whatever its size on the wire: a frame of "[]," repeated
# (3 bytes per empty list) or a pickle of EMPTY_LIST + APPEND (2 bytes) would otherwise build about 20
# million lists, 2 GB, from a 60 MB frame.
MAX_ITEMS = 2_000_000  # JSON: separators and containers ("," ":" "[" "{"), counted before parsing
MAX_PICKLE = 4 << 20  # torch.save: bytes of the pickled part (tensor data lives in records of its own)
_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_plain(value, depth: int = 0) -> bool:
    """Exactly JSON's types (no subclasses, no tuples: they would come back as lists), not too deep."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if depth > 32:
        return False
    if kind is list:
        return all(_json_plain(v, depth + 1) for v in value)
    if kind is dict:
        return all(type(k) is str and _json_plain(v, depth + 1) for k, v in value.items())
    return False


def dumps(message: dict) -> bytes:
    if _json_plain(message):
        return JSON + json.dumps(message, separators=(",", ":")).encode()
    import torch

    buf = io.BytesIO()
    torch.save(message, buf)
    return buf.getvalue()


def _check_archive(payload: bytes) -> None:
    """A torch.save payload is a zip archive whose records are stored, not compressed: what it holds
    is then no larger than the frame.  A forged frame with a deflated record could inflate to many
    gigabytes inside the grader (a 3 MB frame held 3 GiB), so any compressed or oversized record is
    refused before anything is loaded."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ProtocolError(f"unreadable frame ({type(exc).__name__})") from exc
    if any(r.compress_type != zipfile.ZIP_STORED or r.file_size != r.compress_size for r in records):
        raise ProtocolError("a frame with a compressed record")
    if sum(r.file_size for r in records) > len(payload):
        raise ProtocolError("a frame whose records are larger than the frame")
    if any(r.filename.endswith(".pkl") and r.file_size > MAX_PICKLE for r in records):
        raise ProtocolError(f"a frame whose pickled part is larger than {MAX_PICKLE >> 20} MiB")


def loads(payload: bytes) -> dict:
    if payload[:1] == JSON:
        items = sum(payload.count(c) for c in (b",", b":", b"[", b"{"))
        if items > MAX_ITEMS:
            raise ProtocolError(f"a frame of more than {MAX_ITEMS:,} items")
        try:
            message = json.loads(payload[1:])
        except (ValueError, RecursionError) as exc:  # RecursionError: a forged, deeply nested frame
            raise ProtocolError(f"unreadable frame ({type(exc).__name__})") from exc
        if not isinstance(message, dict):
            raise ProtocolError("a frame that is not a dict")
        return message
    _check_archive(payload)
    import torch

    try:
        message = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as exc:  # a forged or corrupt frame: never unpickled beyond plain data
        raise ProtocolError(f"unreadable frame ({type(exc).__name__})") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a frame that is not a dict")
    return message


def frame(message: dict) -> bytes:
    payload = dumps(message)
    return HEADER.pack(len(payload)) + payload


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send(fd: int, message: dict) -> None:
    write_all(fd, frame(message))


def read_exact(fd: int, size: int) -> bytes | None:
    """``size`` bytes from a blocking ``fd``, or None at end of file."""
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, limit: int = 1 << 30) -> dict | None:
    """The next message on a blocking ``fd`` (None at end of file)."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > limit:
        raise ProtocolError(f"a frame of {size} bytes (limit {limit})")
    payload = read_exact(fd, size)
    if payload is None:
        raise ProtocolError("a truncated frame")
    return loads(payload)


def send_with_fds(sock: socket.socket, message: dict, fds: list[int]) -> None:
    """A control message carrying file descriptors (SCM_RIGHTS) in its first byte."""
    data = frame(message)
    socket.send_fds(sock, [data[:1]], fds)
    sock.sendall(data[1:])


def receive_with_fds(sock: socket.socket, limit: int = 1 << 24) -> tuple[dict | None, list[int]]:
    """The next control message and any descriptors that came with it."""
    first, fds, _flags, _addr = socket.recv_fds(sock, 1, 4)
    if not first:
        return None, list(fds)
    rest = _recv_exact(sock, HEADER.size - 1)
    if rest is None:
        return None, list(fds)
    (size,) = HEADER.unpack(first + rest)
    if size > limit:
        raise ProtocolError(f"a control frame of {size} bytes")
    payload = _recv_exact(sock, size)
    if payload is None:
        raise ProtocolError("a truncated control frame")
    return loads(payload), list(fds)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------- a call's tensor arguments


def tensor_arguments(args, kwargs) -> dict:
    """A call's tensor arguments by path: ``a<i>`` for positional, ``k<name>`` for keyword ones (both ends name them so)."""
    import torch

    found = {f"a{i}": a for i, a in enumerate(args) if isinstance(a, torch.Tensor)}
    found.update({f"k{k}": v for k, v in kwargs.items() if isinstance(v, torch.Tensor)})
    return found


_PINNED: dict = {}


def pin_tensor_methods() -> None:
    """Keep torch's own tensor methods, hashlib's SHA-256 and the switches that turn off torch-function and dispatch
    modes, as they are before any student code runs (the runner calls this at start-up).  An outside tester's answer
    set ``X.detach`` on its argument, or left a TorchFunctionMode active, so that reading the argument after the call
    gave back an untouched copy: reads through these ignore both, and a later ``torch.Tensor.detach = ...``."""
    import hashlib

    import torch
    from torch.utils._python_dispatch import _disable_current_modes

    if not _PINNED:
        _PINNED.update(torch=torch, sha256=hashlib.sha256, no_functions=torch._C.DisableTorchFunction, no_modes=_disable_current_modes,
                       **{name: getattr(torch.Tensor, name) for name in ("detach", "as_subclass", "to", "contiguous", "view", "clone", "numpy")})


def plain_tensor(t, copy: bool = False):
    """``t`` as a plain, detached, contiguous CPU tensor (a copy with ``copy``), read without dispatching through it."""
    pin_tensor_methods()
    p = _PINNED
    with p["no_functions"](), p["no_modes"]():
        plain = p["contiguous"](p["to"](p["as_subclass"](p["detach"](t), p["torch"].Tensor), "cpu"))
        return p["clone"](plain) if copy else plain


def tensor_bytes(t):
    """A tensor's bytes as a flat uint8 tensor (no copy when it is plain and contiguous already)."""
    p = _PINNED
    plain = plain_tensor(t)
    with p["no_functions"](), p["no_modes"]():
        return p["view"](p["view"](plain, -1), p["torch"].uint8)


def tensor_digest(t) -> dict:
    """What stands for a tensor too large to send back whole: its SHA-256, shape and dtype."""
    data = tensor_bytes(t)
    with _PINNED["no_functions"](), _PINNED["no_modes"]():
        digest = _PINNED["sha256"](_PINNED["numpy"](data)).hexdigest()
    return {"digest": digest, "shape": list(t.shape), "dtype": str(t.dtype)}
