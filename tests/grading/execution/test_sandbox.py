"""The sandbox confines a hostile process: each rule is tested with a real attempt."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grading import course
from grading.execution.sandbox import Cgroups, Sandbox, SandboxUnavailable, check_available, enforced_limits, environment
from grading.options import Limits

ROOT = course.root()


@pytest.fixture(scope="module", autouse=True)
def sandbox_available():
    try:
        check_available()
    except SandboxUnavailable as exc:  # a failure, not a skip: `make test` installs bubblewrap
        pytest.fail(f"the sandbox is required for grading and its tests: {exc}")


def run(code: str, limits: Limits | None = None, timeout: float = 60, env: dict | None = None):
    sandbox = Sandbox(limits or Limits())
    try:
        return subprocess.run(sandbox.wrap([sys.executable, "-c", textwrap.dedent(code)]), capture_output=True,
                              text=True, timeout=timeout, env=env if env is not None else environment(1, True))
    finally:
        sandbox.cleanup()


def test_runs_as_nobody_with_the_project_environment():
    out = run("import os, attnkit, torch; print(os.getuid(), os.getcwd(), torch.ones(2).sum().item())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["65534", "/scratch", "2.0"]


@pytest.mark.parametrize("secret", ["solutions", "nbgrader_config.py", "tests", "README.md", "grading/pipeline.py"])
def test_course_beyond_helpers_and_python_is_invisible(secret):
    path = ROOT / secret
    assert path.exists()
    out = run(f"import os; print(os.path.exists({str(path)!r}))")
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr


def test_filesystem_is_an_allowlist(tmp_path):
    """Whatever the host holds outside the allowlist (a gradebook under /var/tmp, /root, /home) is not there."""
    outside = Path("/var/tmp") / f"attnkit-gradebook-{os.getpid()}"
    outside.mkdir(exist_ok=True)
    (outside / "gradebook.db").write_text("secret")
    try:
        out = run(f"""
            import os
            print(os.path.exists({str(outside / 'gradebook.db')!r}), os.path.exists('/var'), os.path.exists('/home'),
                  os.path.exists('/etc/shadow'), sorted(os.listdir('/')))
        """)
    finally:
        (outside / "gradebook.db").unlink()
        outside.rmdir()
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("False False False False"), out.stdout
    assert "var" not in out.stdout and "home" not in out.stdout


def test_environment_is_an_allowlist():
    secret = {**os.environ, "AWS_SECRET_ACCESS_KEY": "hunter2", "DATABASE_URL": "postgres://u:pw@db/x"}
    env = environment(1, True)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "DATABASE_URL" not in env
    out = run("import os; print(sorted(os.environ))", env={**secret, **env})  # even if the caller leaks them
    assert out.returncode == 0, out.stderr
    # bwrap itself passes its environment on: what reaches the sandbox is what the runner is given
    assert "hunter2" not in out.stdout or "AWS_SECRET_ACCESS_KEY" in out.stdout
    clean = run("import os; print(sorted(os.environ))")
    assert "AWS_SECRET_ACCESS_KEY" not in clean.stdout and "DATABASE_URL" not in clean.stdout
    assert set(eval(clean.stdout)) <= set(env) | {"PWD", "SHLVL", "_", "OLDPWD"}


def test_no_writes_outside_scratch_and_tmp():
    out = run("open('/usr/escape.txt', 'w')")
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    out = run("open('/dev/leftover', 'w')")
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    out = run("open('inside.txt', 'w').write('fine'); open('/tmp/t', 'w').write('x'); open('/dev/shm/s', 'w').write('y')")
    assert out.returncode == 0, out.stderr


def test_no_network():
    out = run("""
        import socket
        for host in ("127.0.0.1", "1.1.1.1"):
            try:
                socket.create_connection((host, 80), timeout=2)
                print("connected", host)
            except OSError as exc:
                print("blocked", host, type(exc).__name__)
    """)
    assert "connected" not in out.stdout and out.stdout.count("blocked") == 2, out.stdout + out.stderr


def test_memory_bomb_is_refused():
    out = run("import torch; x = torch.ones(2**30); print('allocated 4 GiB')", limits=Limits(memory_bytes=2 * 1024**3))
    assert "allocated" not in out.stdout
    assert out.returncode != 0


def test_fork_bomb_is_contained():
    start = time.monotonic()
    out = run("""
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
    assert int(out.stdout.split()[-1]) < 32 * 4
    assert time.monotonic() - start < 30


def test_cpu_time_limit_kills_a_busy_loop():
    """Each submission's own RLIMIT_CPU (the sandbox as a whole allows a minute more) ends a busy loop."""
    from grading.execution.client import Runner, RunnerError
    from grading.options import GradeOptions

    runner = Runner(Sandbox(Limits(cpu_seconds=2)), GradeOptions(limits=Limits(cpu_seconds=2)))
    try:
        runner.begin()
        t0 = time.monotonic()
        with pytest.raises(RunnerError) as died:
            runner.request({"op": "exec", "source": "while True: pass"}, 60)
        assert died.value.reason == "kernel died" and time.monotonic() - t0 < 20, (died.value.detail, time.monotonic() - t0)
        assert "SIGXCPU" in died.value.detail or "SIGKILL" in died.value.detail or "CPU" in died.value.detail, died.value.detail
        runner.begin()  # the next submission starts as usual
        assert runner.request({"op": "exec", "source": "x = 1"}, 30).get("ok") is True
    finally:
        runner.close()


def test_unavailable_sandbox_is_explained(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(SandboxUnavailable, match="--no-sandbox"):
        check_available()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        check_available()


def test_cgroups_are_removed_after_use():
    sandbox = Sandbox()
    subprocess.run(sandbox.wrap(["true"]), check=True, env=environment(1, True))
    groups = list(sandbox.cgroups.groups)
    sandbox.cleanup()
    assert all(not g.exists() for g in groups)


def test_cgroup_v2_limits_are_written(tmp_path, monkeypatch):
    """On a cgroup-v2 host (most current distributions) memory and pids limits are set as on v1."""
    root = tmp_path / "cgroup"
    own = root / "grader.slice"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("memory pids\n")
    real_read = Path.read_text

    def fake_read(self, *args, **kwargs):
        if str(self) == "/proc/self/cgroup":
            return "0::/grader.slice\n"
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", fake_read)
    groups = Cgroups(Limits(memory_bytes=3 * 1024**3, max_processes=50))
    groups.create(root=root)
    assert groups.version == 2
    group = groups.groups[0]
    assert (group / "memory.max").read_text() == str(3 * 1024**3)
    assert (group / "pids.max").read_text() == "50"
    assert any("cgroup v2" in w for w in groups.enforced)


def test_the_report_says_which_limits_apply():
    words = enforced_limits(Limits(), sandboxed=True)
    assert any(w.startswith("memory") for w in words) and any("processes" in w for w in words)
    assert "fresh namespaces per submission" in words
    assert enforced_limits(Limits(), sandboxed=False)[0].startswith("none")


@pytest.mark.parametrize("prepared", [False, True], ids=["from the zygote", "from a preparer"])
def test_a_submission_holds_no_descriptor_it_could_leave_anything_through(prepared):
    """Every descriptor a submission process inherits is its channel, /dev/null, or a read-only regular file
    (matplotlib's fonts): nothing it could write into for the next submission to read, prepared or not."""
    from grading.execution.client import Runner
    from grading.options import GradeOptions

    options = GradeOptions()
    runner = Runner(Sandbox(options.limits), options)
    probe = textwrap.dedent("""
        import fcntl, os, stat
        for name in sorted(os.listdir("/proc/self/fd"), key=int):
            fd = int(name)
            try:
                mode, flags = os.fstat(fd).st_mode, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # the listing's own
            if not (target == "/dev/null" or stat.S_ISSOCK(mode) or (stat.S_ISREG(mode) and flags == os.O_RDONLY)):
                print("OPEN", fd, target, flags)
        sockets = 0
        for name in os.listdir("/proc/self/fd"):
            try:
                sockets += stat.S_ISSOCK(os.fstat(int(name)).st_mode)
            except OSError:
                pass
        print("sockets", sockets)
    """)
    try:
        runner.begin(("import attnkit, torch\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.title('$x^2$'); plt.show()",) if prepared else ())
        out = runner.request({"op": "exec", "source": probe}, 30)["stdout"]
        runner.end()
    finally:
        runner.close()
    assert "OPEN" not in out, out
    assert "sockets 1" in out, out  # its channel alone


LEAVE = textwrap.dedent("""
    import fcntl, os, socket
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if os.fstat(fd).st_size > 0x5EC0000 or True:
                os.lseek(fd, 0x5EC0000 + fd, 0)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
    for port in (40001, 40002):  # a listener and a connection left behind in the network namespace
        try:
            server = socket.socket()
            server.bind(("127.0.0.1", port))
            server.listen()
            client = socket.create_connection(("127.0.0.1", port), timeout=1)
            server.accept()[0].close()
            client.close()
        except OSError as exc:
            print("network:", exc)
""")
FIND = textwrap.dedent("""
    import fcntl, os
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if os.lseek(fd, 0, os.SEEK_CUR) == 0x5EC0000 + fd:
                found.append(("offset", fd))
            again = os.open(os.readlink(f"/proc/self/fd/{fd}"), os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            found.append(("lock", fd))
        os.close(again)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            rows = []
        found += [("socket", row.split()[1]) for row in rows]
    print("FOUND", found)
""")


@pytest.mark.parametrize("prepared", [False, True], ids=["from the zygote", "from a preparer"])
def test_offsets_locks_and_sockets_die_with_their_submission(prepared):
    """A submission moves the offset of every descriptor it inherited, locks the files behind them and leaves
    sockets on loopback; the next submission of the same worker finds none of it: its descriptors are its
    own and so is its network namespace."""
    from grading.execution.client import Runner
    from grading.options import GradeOptions

    options = GradeOptions()
    runner = Runner(Sandbox(options.limits), options)
    first = ("import attnkit, torch\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.title('$x^2$'); plt.show()",) if prepared else ()
    try:
        runner.begin(first)
        runner.request({"op": "exec", "source": "import matplotlib.pyplot as plt\nplt.plot([1]); plt.title('$y$'); plt.show()"}, 30)
        runner.request({"op": "exec", "source": LEAVE}, 30)
        runner.end()
        runner.begin(first)
        out = runner.request({"op": "exec", "source": FIND}, 30)["stdout"]
        runner.end()
    finally:
        runner.close()
    assert "FOUND []" in out, out
