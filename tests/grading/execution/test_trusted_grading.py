"""Verdicts are decided outside the student's process; hostile submissions gain nothing.

Each test hands a real submission to grading.autograde.grade_submission with the default
options: the student's cells run in the bubblewrap sandbox (grading.sandboxed.runner) and the checks
are decided in this process (grading.execution.engine).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from grading import course
from grading.execution.engine import close_runners, defined_only_at_run_time, pip_installed, scan_for_tampering
from grading.model import GradeTask
from grading.options import GradeOptions
from grading.submission import grade_submission
from grading.tools import synthetic

NB = next(nb for nb in course.notebooks() if nb.assignment == "01_scoring_functions")
FULL = {"test_masked_softmax": 4, "test_batch_scores": 2, "test_bmm_vs_matmul": 1,
        "test_DotProductAttention": 3, "test_AdditiveAttention": 3}
WRONG_SOFTMAX = "def masked_softmax(X, valid_lens):\n    return torch.softmax(X, dim=-1)\n"
OPTIONS = GradeOptions(cell_timeout=30, notebook_timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _runners():
    yield
    close_runners()


def grade(tmp_path: Path, answers: dict[str, str] | None = None, options: GradeOptions = OPTIONS):
    name, data = synthetic.submission(NB, "complete", overrides=answers or {})
    path = tmp_path / name
    path.write_bytes(data)
    result = grade_submission(GradeTask("s1", NB.assignment, NB.name, str(path), str(NB.source), options))
    scores = {q.grade_id: q.score for q in result.questions if q.graded_by == "auto"}
    return result, scores


def test_solution_gets_full_marks_in_the_sandbox(tmp_path):
    result, scores = grade(tmp_path)
    assert scores == FULL, [q.reason for q in result.questions]
    assert not any("tampering" in e for e in result.events)


@pytest.mark.parametrize("nb", course.notebooks(), ids=lambda nb: nb.assignment)
def test_every_cell_of_a_solution_runs_without_an_error_in_the_sandbox(tmp_path, nb):
    """Not only the marks: a course cell that fails in the sandbox (an import, a helper) would show its
    traceback in every student's feedback."""
    import nbformat

    name, data = synthetic.submission(nb, "complete")
    (tmp_path / name).write_bytes(data)
    result = grade_submission(GradeTask("s1", nb.assignment, nb.name, str(tmp_path / name), str(nb.source), OPTIONS))
    executed = nbformat.reads(result.executed, as_version=4)
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(executed.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert not result.has_errors, result.error


def test_blank_scores_zero(tmp_path):
    stub = "raise NotImplementedError()"
    result, scores = grade(tmp_path, dict.fromkeys(["masked_softmax", "batch_scores", "bmm_vs_matmul", "DotProductAttention", "AdditiveAttention"], stub))
    assert scores == dict.fromkeys(FULL, 0.0)
    # One plain sentence per question: not the NameErrors of names the unfinished answer never defined,
    # and no "visible checks passed" printed by a check cell whose checks failed.
    for q in result.questions:
        if q.graded_by == "auto":
            assert q.reason.startswith("not answered yet"), (q.grade_id, q.reason)
            assert "NameError" not in q.reason and len(q.reason) < 200, (q.grade_id, q.reason)
            assert all("NameError" not in p.reason for p in q.properties), (q.grade_id, [p.reason for p in q.properties])
            assert "visible checks passed" not in q.visible, (q.grade_id, q.visible)


TAMPER = {
    "torch.allclose": "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True",
    "attnkit checks": "import attnkit\nattnkit.check_close = attnkit.check_masked_zero = lambda *a, **k: None\nattnkit.checks.check_close = lambda *a, **k: None",
    "builtins": "import builtins\nbuiltins.AssertionError = type('Never', (Exception,), {})",
    "sys.excepthook": "import sys\nsys.excepthook = lambda *a: None",
    "set_custom_exc": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)",
    "events.register": "get_ipython().events.register('post_run_cell', lambda *a, **k: None)",
    "testing": "torch.testing.assert_close = lambda *a, **k: None",
}


@pytest.mark.parametrize("name", TAMPER)
def test_monkeypatching_gains_nothing_and_is_flagged(tmp_path, name):
    result, scores = grade(tmp_path, {"masked_softmax": WRONG_SOFTMAX + TAMPER[name]})
    (tmp_path / "honest").mkdir()
    _, honest = grade(tmp_path / "honest", {"masked_softmax": WRONG_SOFTMAX})
    assert scores["test_masked_softmax"] == honest["test_masked_softmax"] < 4, "tampering must gain nothing"
    assert scores["test_batch_scores"] == 2  # the others are graded as usual
    assert result.tampering, result.events


def test_tampering_scan_flags_code_built_at_run_time():
    """What an answer received from another submission must be run as generated code: that is flagged, and
    a module's own eval() or compile() method is not."""
    found = scan_for_tampering("exec(zlib.decompress(data))\nf = types.FunctionType(marshal.loads(c), {})\n"
                               "model.eval()\nnet = net.compile()\ny = eval('2')")
    assert [f.split(": ", 1)[1] for f in found] == [
        "exec(zlib.decompress(data)) (line 1)", "types.FunctionType(marshal.loads(c), {}) (line 2)", "eval('2') (line 5)",
        "marshal.loads(c) (line 2)"], found
    assert all(f.startswith("runs code it builds while it runs: ") for f in found)
    # what an outside tester did instead: the received source written to a module and imported from /tmp
    found = scan_for_tampering("import sys as _sy\n_sy.path.insert(0, '/tmp')\nfrom importlib import import_module as im\n"
                               "im('m')\nfrom builtins import exec as run\nrun(c)\nget_ipython().run_cell(src)\n"
                               "from torch import compile\nm = compile(model)\nnn.Linear(2, 2).eval()")
    assert [f.split(" (line")[0] for f in found] == [
        "changes where imports come from: _sy.path.insert(0, '/tmp')", "runs code it builds while it runs: im('m')",
        "runs code it builds while it runs: run(c)", "runs code it builds while it runs: get_ipython().run_cell(src)"], found
    found = scan_for_tampering("import _received\nfrom _received import *\nimport torch, math\nfrom torch import nn\n"
                               "from google.colab import drive\nimport d2l.torch")
    assert [f.split(", which")[0] for f in found] == ["imports `_received`"] * 2, found
    # a package the notebook pip-installs (Colab's habit; nothing is installed while grading) is not flagged
    installs = pip_installed(["%pip install -q torchinfo\n!pip install torch-info==1.0 -U\n",
                              "get_ipython().run_line_magic('pip', 'install einops')"])  # as a Colab .py holds it
    assert installs == {"torchinfo", "torch_info", "einops"}
    assert scan_for_tampering("try:\n    import torchinfo\nexcept ImportError:\n    pass", installs=installs) == []


def test_an_answer_defined_only_at_run_time_is_flagged():
    """A fourth outside tester's friend ran the answers it received with ``getattr(builtins, "ex" + "ec")`` from a
    cell that defines nothing: both the computed builtin and the answer no cell binds are flagged."""
    import nbformat

    found = scan_for_tampering('import builtins as _bi\ngetattr(_bi, "ex" + "ec")(_received, globals())\n'
                               'getattr(model, "eval")()')
    assert found == ['fetches a builtin by a computed name: getattr(_bi, "ex" + "ec") (line 2)'], found
    friend = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("getattr(_bi, name)(_received, globals())"),
                                             nbformat.v4.new_code_cell("def batch_scores(Q, K):\n    return Q @ K.mT")])
    assert defined_only_at_run_time(friend, {"masked_softmax", "batch_scores"}) == [
        "`masked_softmax` is defined only while the notebook runs: no cell binds it in its source (code it received or built?)"]
    # Colab's habits: a cell magic above the answer, a magic as a block's only statement
    habits = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%%time\ndef masked_softmax(X, valid_lens):\n    return X"),
        nbformat.v4.new_code_cell("try:\n    import torchinfo\nexcept ImportError:\n    %pip install -q torchinfo\nbatch_scores = 1")])
    assert defined_only_at_run_time(habits, {"masked_softmax", "batch_scores"}) == []


@pytest.mark.parametrize("source", [
    "import sys\nframe = sys._getframe(1)",
    "from sys import _getframe as where\nwhere(1)",
    "import inspect\nframe = inspect.currentframe()",
    "def f(e):\n    return e.__traceback__.tb_frame.f_back.f_locals",
    "import gc\nobjs = gc.get_objects()",
    "import sys\nrunner = sys.modules['__main__']",
    "import sys as s\nrunner = vars(s)['modules'].get('__main__')",
    "import sys\nrunner = sys.__dict__['modules']",
    "import __main__",
    "from grading.sandboxed import runner",
    "import sys\nf = getattr(sys, '_get' + 'frame')",
    "classes = object.__subclasses__()",
    "g = masked_softmax.__globals__",
])
def test_reaching_the_runners_frames_or_objects_is_flagged(source):
    """An outside tester walked up the stack to the runner's copies of the arguments (sys._getframe, f_locals):
    every route to the frames or the objects of the code around an answer is named."""
    found = scan_for_tampering(source)
    assert any(f.startswith("reaches the frames or objects of the code that runs it") for f in found), found


def test_tampering_scan_ignores_ordinary_code():
    # the set-up cell asks whether Colab's module is loaded: a membership test, not a module fetched
    assert scan_for_tampering("import sys\nIN_COLAB = 'google.colab' in sys.modules") == []
    assert scan_for_tampering("x = torch.ones(3)\nself.W_q = nn.LazyLinear(4)\nmodel.weight = w") == []
    assert scan_for_tampering("torch.allclose = f") and scan_for_tampering("setattr(torch, 'equal', f)")


CRASHES = {"os._exit": "import os\nos._exit(1)", "segfault": "import ctypes\nctypes.string_at(0)",
           "memory bomb": "x = torch.ones(2**31)"}


@pytest.mark.parametrize("name", CRASHES)
def test_a_crash_keeps_earlier_grades(tmp_path, name):
    answer = "def batch_scores(queries, keys):\n    return torch.bmm(queries, keys.transpose(1, 2))\n" + CRASHES[name]
    result, scores = grade(tmp_path, {"batch_scores": answer})
    assert scores["test_masked_softmax"] == 4  # ran before
    if name == "memory bomb":  # refused by the memory limit: an ordinary error in that cell
        assert scores["test_DotProductAttention"] == 3
        assert "memory" in (next(q for q in result.questions if q.grade_id == "test_batch_scores").answer_error or "").lower()
        return
    later = [q for q in result.questions if q.grade_id in {"test_batch_scores", "test_DotProductAttention"}]
    assert all(q.status == "error" and q.score == 0 and "kernel died" in q.reason for q in later), [q.reason for q in later]
    assert any("kernel died" in e for e in result.events)
    _, after = grade(tmp_path)  # the next submission is graded normally
    assert after == FULL


def test_sigint_ignoring_loop_times_out(tmp_path):
    loop = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    result, scores = grade(tmp_path, {"DotProductAttention": loop}, GradeOptions(cell_timeout=3, notebook_timeout=60))
    assert scores["test_masked_softmax"] == 4 and scores["test_DotProductAttention"] == 0
    assert any("did not respond to an interrupt" in e for e in result.events), result.events
    _, after = grade(tmp_path)
    assert after == FULL


def test_a_slow_cell_is_interrupted_and_only_its_question_is_lost(tmp_path):
    slow = "import time\ntime.sleep(3600)"
    result, scores = grade(tmp_path, {"DotProductAttention": slow}, GradeOptions(cell_timeout=2, notebook_timeout=60))
    assert scores == {**FULL, "test_DotProductAttention": 0.0}
    assert any("was interrupted" in e for e in result.events), result.events


def test_reading_the_solutions_fails_in_the_sandbox(tmp_path):
    spy = (f"import os\nleak = os.path.exists({str(course.solutions())!r}) or os.path.exists({str(course.root() / 'gradebook.db')!r})\n"
           "assert not leak, 'the solutions are visible'\n")
    result, scores = grade(tmp_path, {"batch_scores": "def batch_scores(queries, keys):\n    return torch.bmm(queries, keys.transpose(1, 2))\n" + spy})
    assert scores["test_batch_scores"] == 2
    assert not next(q for q in result.questions if q.grade_id == "test_batch_scores").answer_error


SLOW_REPLIES = '''
import gc, time
for _space in gc.get_objects():  # the sandbox's own request handler, found and slowed: every value takes 1.5 s
    if isinstance(_space, dict) and "Submission" in _space and "_capture_figures" in _space:
        _cls = _space["Submission"]
        def _slow(self, request, _real=_cls.op_get):
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                try:
                    time.sleep(max(end - time.monotonic(), 0))
                except KeyboardInterrupt:
                    pass
            return _real(self, request)
        _cls.op_get = _slow
'''


def test_the_requests_of_one_cell_share_its_time():
    """Each request of a check used to get the whole cell time, so a submission that answered every one
    slowly (but each in time) ran far past its limits.  Now a cell's requests share the cell's deadline."""
    import time

    from grading.execution.client import RunnerInterrupted
    from grading.execution.engine import runner_for

    runner = runner_for(GradeOptions(cell_timeout=30, interrupt_grace=3))
    runner.begin()
    try:
        assert runner.request({"op": "exec", "source": SLOW_REPLIES + "\nx = 1\n"}, 30).get("ok") is True
        runner.deadline = time.monotonic() + 2.0
        assert runner.request({"op": "get", "name": "x"}, 30)["value"] == 1  # 1.5 s: in time
        with pytest.raises(RunnerInterrupted):  # 1.5 s more: past the cell's deadline, though well within 30 s
            runner.request({"op": "get", "name": "x"}, 30)
    finally:
        runner.deadline = None
        runner.end()


@pytest.mark.parametrize("name", ["ValueError", "LEAK_1842_-17", "KeyError"])
def test_a_student_exception_of_any_name_is_rebuilt_as_the_students(name):
    from grading.execution.client import StudentError, _student_exception

    exc = _student_exception({"raised": name, "message": "m"})
    assert isinstance(exc, StudentError) and exc.student_type == name
    assert isinstance(exc, ValueError) == (name == "ValueError")


def test_a_frame_holds_no_more_than_it_weighs():
    """torch.save writes stored records; a forged frame with a deflated one would inflate inside the grader."""
    import io
    import zipfile

    import torch

    from grading.sandboxed import protocol

    message = {"value": torch.arange(1000.0), "shape": (2, 3)}
    back = protocol.loads(protocol.dumps(message))
    assert torch.equal(back["value"], message["value"]) and back["shape"] == (2, 3)
    original = zipfile.ZipFile(io.BytesIO(protocol.dumps(message)))
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as z:
        for record in original.infolist():
            z.writestr(record.filename, original.read(record), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(protocol.ProtocolError, match="compressed record"):
        protocol.loads(forged.getvalue())


def test_a_frame_builds_no_more_objects_than_a_bound():
    """A frame small enough to be read may still describe millions of empty lists (3 bytes each in JSON,
    2 in a pickle): both forms are refused by count before anything is built; ordinary messages pass."""
    import io

    import torch

    from grading.sandboxed import protocol

    many = b'J{"ok":true,"x":[' + b"[]," * (protocol.MAX_ITEMS + 1) + b"[]]}"
    with pytest.raises(protocol.ProtocolError, match="more than 2,000,000 items"):
        protocol.loads(many)
    buf = io.BytesIO()
    torch.save({"x": [[] for _ in range(3_000_000)]}, buf)
    with pytest.raises(protocol.ProtocolError, match="pickled part is larger than 4 MiB"):
        protocol.loads(buf.getvalue())
    ordinary = {"ok": True, "stdout": "tensor([[1., 2.], [3., 4.]])\n" * 500, "figures": [{"png": "iVBOR" * 20_000}]}
    assert protocol.loads(protocol.dumps(ordinary)) == ordinary
    values = {"value": (torch.ones(3),) * 1000, "names": [f"n{i}" for i in range(10_000)]}
    assert len(protocol.loads(protocol.dumps(values))["value"]) == 1000


def test_a_huge_cell_is_named_not_scanned():
    """The tampering scan runs in the worker, outside any time limit: a cell too long to parse quickly is
    reported instead of read, and a long chain of nested calls costs time linear in its length."""
    import time

    from grading.execution.engine import SCAN_LIMIT, scan_for_tampering

    huge = "x = 1\n" + "y = f(" * 1000 + "0" + ")" * 1000 + "\n" + " " * SCAN_LIMIT
    assert scan_for_tampering(huge) == [f"not scanned for tampering: {len(huge):,} characters (more than {SCAN_LIMIT:,})"]
    chained = "_ = f" + ("(" + "x," * 300 + ")") * 150 + "\n"  # 150 calls, each holding the ones before it
    assert len(chained) < SCAN_LIMIT
    started = time.perf_counter()
    assert scan_for_tampering(chained) == []
    assert time.perf_counter() - started < 2  # unparsing every call whole took 5 s here
    nested = "sys.settrace(" * 150 + "None" + ")" * 150
    found = scan_for_tampering(nested)
    assert len(found) == 150 and found[0].startswith("calls sys.settrace(sys.settrace(") and len(found[0]) < 120
    assert scan_for_tampering("setattr(torch, 'allclose', f)\nsetattr(model, 'x', 1)") == [
        "calls setattr(torch, 'allclose', f) (line 1)"]


def test_hidden_reasons_keep_what_was_expected_and_drop_what_came_back():
    from grading.execution.engine import _without_student_values

    assert _without_student_values("expected shape (3, 4, 6), got (0, 18423, 5189)") == "expected shape (3, 4, 6), got something else"
    assert _without_student_values("expected rows that sum to 1") == "expected rows that sum to 1"
    assert _without_student_values("expected a result, got ValueError: LEAK 0.1842") == "expected a result, got an exception"
    assert _without_student_values("expected a result, got LEAK_1842: x") == "expected a result, got an exception"


def test_a_tensor_with_attributes_of_its_own_is_refused():
    """A second outside attacker's tensor: torch.load(weights_only=True) restores instance attributes, so a
    tensor could arrive with ``detach`` or ``dim`` answering whatever allowlisted callable it named."""
    import io

    import torch

    from grading.execution.client import Budget, LimitExceeded, checked

    lying = torch.ones(3)
    lying.detach = torch.Size
    lying.dim = torch.Size
    buffer = io.BytesIO()
    torch.save({"value": lying}, buffer)
    buffer.seek(0)
    received = torch.load(buffer, weights_only=True)["value"]
    assert received.detach() == torch.Size([])  # what trusted code would have seen
    with pytest.raises(LimitExceeded, match="attributes of its own"):
        checked(received, Budget(1 << 20))
    assert torch.equal(checked(torch.ones(3), Budget(1 << 20)), torch.ones(3))  # a plain tensor still passes


def test_the_notebooks_first_cells_run_once_per_zygote_and_look_as_if_run_each_time(tmp_path):
    """The course's cells before the first answer run once, in a preparer forked from the zygote; each
    submission is forked from their state.  Their outputs are those of a run of its own, the state they leave
    is there (the answers use it), and a submission whose first cells differ from the released ones runs
    them itself."""
    import nbformat

    from grading.execution.engine import execute, first_cells, runner_for
    from grading.intake.mapping import map_submission
    from grading.intake.template import load_template

    template = load_template(NB.source, NB.assignment, NB.name)
    first = first_cells(template)
    assert len(first) >= 2 and all(i < min(p.index for p in template.answers) for i in first)
    outputs = []
    for student in ("s1", "s2"):
        folder = tmp_path / student
        folder.mkdir()
        result, scores = grade(folder)
        assert scores == FULL, [q.reason for q in result.questions]
        executed = nbformat.reads(result.executed, as_version=4)
        outputs.append([executed.cells[i].outputs for i in first])
    assert outputs[0] == outputs[1] and all(outputs[0])  # the printed variances and the figure, for both
    runner = runner_for(OPTIONS)
    known = set(runner.prepared)
    assert runner.prepare(tuple(first.values())) in known  # prepared already: not run again
    assert len(runner.prepared[runner.prepare(tuple(first.values()))]) == len(first)
    # The same cells with a blank line added are not the released ones: that submission runs them itself, and
    # every cell's outputs equal those of the prepared run.
    name, data = synthetic.submission(NB, "complete")
    (tmp_path / name).write_bytes(data)
    prepared, own = map_submission(tmp_path / name, template).nb, map_submission(tmp_path / name, template).nb
    for index in first:
        own.cells[index].source += "\n"
    execute(prepared, template, OPTIONS, 120)
    execute(own, template, OPTIONS, 120)
    assert [c.get("outputs") for c in prepared.cells] == [c.get("outputs") for c in own.cells]
    dims = next(i for i, source in first.items() if source.startswith("dims ="))
    own.cells[dims].source += "print('MY OWN RUN')\n"
    execute(own, template, OPTIONS, 120)
    assert "MY OWN RUN" in "".join(o.get("text", "") for o in own.cells[dims].outputs)


def _preparers(runner) -> list:
    """The zygote's prepared children, seen from the host: processes of the runner's command whose parent is the zygote."""
    import psutil

    parents = {}
    for process in psutil.Process(runner.proc.pid).children(recursive=True):
        try:
            if process.cmdline()[1:3] == ["-m", "grading.sandboxed.runner"]:  # (bwrap's own names it too)
                parents[process] = process.ppid()
        except psutil.NoSuchProcess:  # the last submission's processes, going
            continue
    zygote = [p for p, parent in parents.items() if parent not in {r.pid for r in parents}]
    assert len(zygote) == 1, parents
    return [p for p, parent in parents.items() if parent == zygote[0].pid]


def test_a_preparer_that_died_costs_one_submission_its_shortcut_not_its_grade(tmp_path):
    """Were a preparer to die between submissions, the next submission runs every cell itself, and the one after
    it is prepared again; both keep full marks."""
    from grading.execution.engine import runner_for

    first, _ = grade(tmp_path)
    runner = runner_for(OPTIONS)
    preparers = _preparers(runner)
    assert preparers and runner.prepared, preparers  # (one per notebook this worker has graded)
    import psutil

    for process in preparers:
        process.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in preparers):
        time.sleep(0.05)  # dead (the zygote reaps it when the next submission ends)
    for attempt in ("after", "again"):
        folder = tmp_path / attempt
        folder.mkdir()
        result, scores = grade(folder)
        assert scores == FULL, (attempt, [q.reason for q in result.questions])
        assert result.executed == first.executed, attempt
    assert len(_preparers(runner)) == 1 and runner.prepared  # this notebook's, made again
