"""The sandbox confines a hostile process: each rule is tested with a real attempt."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grading.course import ROOT
from grading.sandbox import Limits, Sandbox, SandboxUnavailable, check_available


@pytest.fixture(scope="module", autouse=True)
def sandbox_available():
    try:
        check_available()
    except SandboxUnavailable as exc:  # a failure, not a skip: CI installs bubblewrap
        pytest.fail(f"the sandbox is required for grading and its tests: {exc}")


def run(tmp_path: Path, code: str, limits: Limits = Limits(), hidden=(), timeout: float = 60):
    sandbox = Sandbox(tmp_path / "scratch", limits=limits, hidden=tuple(hidden))
    try:
        return subprocess.run(
            sandbox.wrap([sys.executable, "-c", textwrap.dedent(code)]),
            capture_output=True, text=True, timeout=timeout,
        )
    finally:
        sandbox.cleanup()


def test_runs_as_nobody_with_the_project_environment(tmp_path):
    out = run(tmp_path, "import os, attnkit, torch; print(os.getuid(), os.getcwd(), torch.ones(2).sum().item())")
    assert out.returncode == 0, out.stderr
    uid, cwd, total = out.stdout.split()
    assert uid == "65534" and cwd == str((tmp_path / "scratch").resolve()) and total == "2.0"


@pytest.mark.parametrize("secret", ["solutions", "grading/nbgrader_config.py", "tests", "README.md"])
def test_repository_beyond_helpers_and_venv_is_invisible(tmp_path, secret):
    assert (ROOT / secret).exists()
    out = run(tmp_path, f"open({str(ROOT / secret)!r}).read() if {str(ROOT / secret)!r}.endswith('.py') or {str(ROOT / secret)!r}.endswith('.md') else __import__('os').listdir({str(ROOT / secret)!r})")
    assert out.returncode != 0 and ("No such file" in out.stderr or "Permission" in out.stderr), out.stderr


def test_home_and_other_hidden_folders_are_invisible(tmp_path):
    other = tmp_path / "other_student"
    other.mkdir()
    (other / "answers.ipynb").write_text("{}")
    out = run(tmp_path, f"import os; print(os.listdir({str(other)!r})); print(os.listdir(os.path.expanduser('~')))", hidden=[other])
    assert out.returncode == 0, out.stderr
    assert "answers.ipynb" not in out.stdout


def test_no_writes_outside_scratch(tmp_path):
    target = ROOT / "sandbox-escape.txt"
    out = run(tmp_path, f"open({str(target)!r}, 'w').write('x')")
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    assert not target.exists()
    out = run(tmp_path, "open('inside.txt', 'w').write('fine'); import tempfile; tempfile.TemporaryFile().write(b'x')")
    assert out.returncode == 0, out.stderr


def test_no_network(tmp_path):
    out = run(tmp_path, """
        import socket
        for host in ("127.0.0.1", "1.1.1.1"):
            try:
                socket.create_connection((host, 80), timeout=2)
                print("connected", host)
            except OSError as exc:
                print("blocked", host, type(exc).__name__)
    """)
    assert "connected" not in out.stdout and out.stdout.count("blocked") == 2, out.stdout + out.stderr


def test_memory_bomb_is_refused(tmp_path):
    out = run(tmp_path, "import torch; x = torch.ones(2**30); print('allocated 4 GiB')", limits=Limits(memory_bytes=2 * 1024**3))
    assert "allocated" not in out.stdout
    assert out.returncode != 0


def test_fork_bomb_is_contained(tmp_path):
    start = time.monotonic()
    out = run(tmp_path, """
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(2)
                    os._exit(0)
                n += 1
        except OSError:
            print("stopped after", n)
    """, limits=Limits(max_processes=32))
    assert "stopped after" in out.stdout, out.stderr
    assert int(out.stdout.split()[-1]) < 32
    assert time.monotonic() - start < 30


def test_cpu_time_limit_kills_a_busy_loop(tmp_path):
    out = run(tmp_path, "while True: pass", limits=Limits(cpu_seconds=1), timeout=30)
    assert out.returncode in (-9, 137, -24, 152), out.returncode  # SIGKILL or SIGXCPU


def _alive(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


def test_sigint_ignoring_loop_dies_with_its_sandbox(tmp_path):
    """The grader's wall-clock limit kills the sandbox; nothing the student started survives."""
    sandbox = Sandbox(tmp_path / "scratch")
    marker = f"loop-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        f"# {marker}\nimport os, signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "if os.fork() == 0:\n    os.setsid()\n"  # a child that even leaves the session
        "print('ready', flush=True)\nwhile True: time.sleep(0.1)"
    )
    proc = subprocess.Popen(sandbox.wrap([sys.executable, "-c", code]), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert _alive(marker)
    proc.kill()
    proc.wait(timeout=10)
    sandbox.cleanup()
    deadline = time.monotonic() + 5
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(marker), "a process of the sandbox survived it"


def test_unavailable_sandbox_is_explained(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(SandboxUnavailable, match="--no-sandbox"):
        check_available()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        check_available()


def test_cleanup_removes_cgroups(tmp_path):
    sandbox = Sandbox(tmp_path / "scratch")
    subprocess.run(sandbox.wrap(["true"]), check=True)
    groups = list(sandbox._cgroups)
    sandbox.cleanup()
    assert all(not g.exists() for g in groups)
    assert os.access(tmp_path / "scratch", os.W_OK)
