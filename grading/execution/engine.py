"""Run one notebook: student code in the sandbox, verdicts in this process.

:func:`execute` walks the graded notebook (outputs are written into it) and fills an
:class:`~grading.model.ExecLog`:

* student cells (answers, "try it" cells) run only in the sandbox, in the submission's own
  isolated process (:mod:`grading.sandboxed.runner`); their figures come back as PNG images;
* given cells (set-up, locked code) run there *and* here, in a :class:`TrustedNamespace`;
* test cells run in the sandbox as the student sees them (the visible part, so that the
  submission's state is what it would be in their notebook), then are decided here, segment by
  segment, by :func:`run_grade_cell`.  A grade cell sees the trusted namespace plus the answers
  the notebook declares (the names its solution cells define), fetched from the sandbox at that
  moment: data by value, functions and classes as stand-ins whose calls run there.  Builtins and
  every other name are the grader's own, so rebinding ``range`` or ``torch`` changes nothing
  here; such code is reported as possible tampering.

One runner (one sandbox, one warm zygote) lives in each worker process; a runner that dies is
replaced.  The same code runs without bubblewrap under ``--no-sandbox``.
"""

from __future__ import annotations

import ast
import atexit
import base64
import builtins
import contextlib
import functools
import importlib.util
import io
import re
import symtable
import sys
import threading
import time
from dataclasses import dataclass, field

import nbformat
from IPython.core.inputtransformer2 import TransformerManager

from attnkit.checks import recording
from grading.execution.client import (
    Budget,
    Runner,
    RunnerError,
    RunnerInterrupted,
    StudentError,
    checked,
    decode,
)
from grading.execution.sandbox import Sandbox
from grading.intake.template import Template, module_binds, parse, used_and_bound
from grading.model import AFTER_HIDDEN, CellRun, CellStatus, ExecLog, PropertyResult, quotable_type
from grading.options import GradeOptions

_RUNNERS: dict[tuple, Runner] = {}
_transform = functools.lru_cache(maxsize=4096)(TransformerManager().transform_cell)  # the course's cells recur in every submission
PNG = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE = 2 * 1024**2  # bytes of one figure
MAX_FIGURES = 8 * 1024**2  # bytes of all the figures of one notebook (the course's own come to well under 1 MiB)


def runner_for(options: GradeOptions) -> Runner:
    """This process's runner for these options, started on first use (one per thread: Dask runs tasks in threads)."""
    key = (threading.get_ident(), options.sandbox, options.limits, options.threads, options.reply_bytes)
    runner = _RUNNERS.get(key)
    if runner is not None and runner.alive:
        return runner
    if runner is not None:
        runner.close()
    runner = Runner(Sandbox(options.limits) if options.sandbox else None, options)
    _RUNNERS[key] = runner
    return runner


def first_cells(template: Template) -> dict[int, str]:
    """The course's own code cells before its first answer or check, index -> source: the same in every
    submission that kept them, so they run once per zygote (:meth:`Runner.begin`)."""
    first = min((p.index for p in template.parts.values() if p.kind in ("answer", "test")), default=len(template.nb.cells))
    return {index: cell.source for index, cell in enumerate(template.nb.cells[:first])
            if cell.cell_type == "code" and cell.source.strip()}


def close_runners() -> None:
    for runner in list(_RUNNERS.values()):
        runner.close()
    _RUNNERS.clear()


def forget_runners() -> None:
    """Drop the runners this process inherited by fork, without closing them: they are the parent's."""
    _RUNNERS.clear()


atexit.register(close_runners)  # a worker process that ends takes its sandboxes with it


# --------------------------------------------------------------------------------------------
# tampering: reported, never rewarded (verdicts do not depend on the student's process)

_PATCH_TARGETS = ("torch", "np", "numpy", "builtins", "__builtins__", "sys", "attnkit", "math", "warnings", "nn", "F")
_SUSPICIOUS_CALLS = {"set_custom_exc", "register", "setattr", "reload", "excepthook", "settrace", "setprofile"}
# Code built while the cell runs: what an answer received from elsewhere (another submission, through a channel
# the sandbox cannot close) must be run this way.  Bare builtins only (``model.eval()`` is not ``eval``).
_GENERATED_CODE = {"exec", "eval", "compile", "__import__"}
_GENERATED_CODE_ATTRS = {("marshal", "loads"), ("pickle", "loads"), ("types", "FunctionType"), ("types", "CodeType"),
                         ("importlib", "import_module"), ("runpy", "run_path"), ("runpy", "run_module")}
_GENERATED_CODE_METHODS = {"run_cell", "exec_module", "load_module"}  # IPython's shell, importlib's loaders
_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))
SCAN_LIMIT = 100_000  # characters; the longest cell of the course's solutions has about 8,000


@functools.lru_cache(maxsize=1024)
def _installed(top_level: str) -> bool:
    """A module the grader's environment, which the sandbox shares, can import (``google``: Colab's, stood in for)."""
    if top_level in sys.builtin_module_names or top_level in sys.stdlib_module_names or top_level == "google":
        return True
    try:
        return importlib.util.find_spec(top_level) is not None
    except (ImportError, ValueError):
        return False


_INSTALLER = r"(?:pip3?|conda|mamba|micromamba|uv\s+pip|python3?\s+-m\s+pip)\s+install\b"
_INSTALL = re.compile(rf"^\s*[!%]{{1,2}}\s*{_INSTALLER}(.*)$"  # as written in a notebook
                      rf"|(?:run_line_magic\(\s*['\"]|system\(\s*['\"])(?:{_INSTALLER}|(?:pip|conda|mamba)['\"],\s*['\"]install\b)"
                      r"([^'\"]*)", re.M)  # as IPython (or a Colab .py) writes it: get_ipython().run_line_magic('pip', 'install x')


def pip_installed(sources) -> frozenset[str]:
    """The packages a notebook's ``!pip install`` / ``%pip install`` lines name, as module names would be spelled
    (``torch-info==1.0`` -> ``torch_info``): importing one of them, absent here, is a student's habit."""
    names = set()
    for source in sources:
        for match in _INSTALL.finditer(source):
            for word in (match.group(1) or match.group(2) or "").split():
                if not word.startswith("-"):
                    names.add(re.split(r"[<>=!~\[;@ ]", word, maxsplit=1)[0].lower().replace("-", "_"))
    return frozenset(names)


def _without_magics(source: str) -> tuple[list[str], ast.Module | None]:
    """A cell's lines with each magic or shell line made a ``pass`` at its indent (one may be a block's only
    statement: ``except ImportError: %pip install x``), and their module (None if it does not parse)."""
    lines = [line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines()]
    try:
        return lines, ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return lines, None


def defined_only_at_run_time(nb: nbformat.NotebookNode, fetched: set[str]) -> list[str]:
    """Answers a check found in the student's namespace that no cell of the notebook binds in its source: code
    that received its answers from elsewhere (another submission) defines them while it runs."""
    bound: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if len(cell.source) > SCAN_LIMIT:
            return []  # a cell too long to parse here could bind anything (the scan names it)
        tree = _without_magics(cell.source)[1]  # `%%time` and `%%capture` cells: the Python below the magic
        bound |= used_and_bound(tree)[1] if tree is not None else set()
    return [f"`{name}` is defined only while the notebook runs: no cell binds it in its source (code it received or built?)"
            for name in sorted(fetched - bound)]


def scan_for_tampering(source: str, protected: frozenset[str] = frozenset(), installs: frozenset[str] = frozenset()) -> list[str]:
    """Static look at a student cell: patching torch, builtins, sys or IPython hooks; rebinding a builtin
    or a name the notebook's own code imports (``protected``).  A cell longer than ``SCAN_LIMIT`` characters
    is not read (parsing alone would take seconds of the worker's time, outside any limit): it is named instead."""
    if len(source) > SCAN_LIMIT:
        return [f"not scanned for tampering: {len(source):,} characters (more than {SCAN_LIMIT:,})"]
    lines, tree = _without_magics(source)
    if tree is None:
        return []
    found = []
    shadow = _BUILTINS | set(_PATCH_TARGETS) | protected
    for node in tree.body:  # top-level rebinding of a builtin or a library name
        names = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.asname for a in node.names if a.asname]
        for name in names:
            if name in shadow and name not in ("_",):
                found.append(f"rebinds `{name}` (line {node.lineno})")
    aliases = {}  # a name the cell imports under another name -> what it is
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname})
        elif isinstance(node, ast.ImportFrom) and node.module:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names if a.name != "*"})
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for module in modules:
            top = module.partition(".")[0]
            if not _installed(top) and top.lower() not in installs:
                found.append(f"imports `{module[:60]}`, which is not installed and which no pip line of the notebook installs: "
                             f"a module the notebook wrote itself, or one installed by hand? (line {node.lineno})")
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            root = target
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if target is not root and isinstance(root, ast.Name) and root.id in _PATCH_TARGETS:
                found.append(f"assigns {ast.unparse(target)} (line {node.lineno})")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) and isinstance(func.value, (ast.Name, ast.Attribute)) else ""
            head, _, rest = owner.partition(".")
            owner = ".".join(filter(None, (aliases.get(head, head), rest)))  # `import sys as s`: s.path is sys.path
            if isinstance(func, ast.Name) and name in aliases:  # `from builtins import exec as run`: run(...) is exec
                owner, _, name = aliases[name].rpartition(".")
            bare = isinstance(func, ast.Name) and not owner
            first = node.args[0] if node.args else None
            # getattr(builtins, "ex" + "ec"): a builtin fetched by a name the scan cannot read
            computed = name == "getattr" and bare and isinstance(first, ast.Name) and aliases.get(first.id, first.id) in (
                "builtins", "__builtins__")
            generated = ((bare or owner == "builtins") and name in _GENERATED_CODE) or (owner, name) in _GENERATED_CODE_ATTRS or (
                isinstance(func, ast.Attribute) and name in _GENERATED_CODE_METHODS) or owner == "sys.path" or computed
            if name not in _SUSPICIOUS_CALLS and not generated:
                continue
            # Only the call's own line is quoted, never the whole call unparsed: a chain of nested calls,
            # each unparsed whole, would cost time quadratic in the cell's length, outside any time limit.
            line = lines[node.lineno - 1].encode() if node.lineno <= len(lines) else b""  # offsets count UTF-8 bytes
            end = node.end_col_offset if node.end_lineno == node.lineno else len(line)
            call = line[node.col_offset:min(end, node.col_offset + 200)].decode(errors="replace").strip()
            if generated:
                what = ("changes where imports come from" if owner == "sys.path" else
                        "fetches a builtin by a computed name" if computed else "runs code it builds while it runs")
                found.append(f"{what}: {call[:80]} (line {node.lineno})")
                continue
            first = node.args[0] if node.args else None
            if (name != "register" or "events" in call.partition("(")[0] or "events" in call[:120]) and (
                name != "setattr" or (isinstance(first, ast.Name) and first.id in _PATCH_TARGETS)
            ):
                found.append(f"calls {call[:80]} (line {node.lineno})")
    found += _introspection(tree, aliases)
    return found


# Attributes and functions that reach the frames of running code, or every object of the process: an answer
# that uses them can find the grader's own code in its process (the arguments of a call, the channel).
_FRAME_ATTRS = frozenset({"f_back", "f_locals", "f_globals", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "ag_frame",
                          "__globals__", "__subclasses__", "__closure__"})
_INTROSPECTION = frozenset({("sys", "_getframe"), ("sys", "_current_frames"), ("inspect", "currentframe"), ("inspect", "stack"),
                            ("inspect", "getouterframes"), ("inspect", "trace"), ("gc", "get_referrers"), ("gc", "get_referents"),
                            ("gc", "get_objects")})  # settrace and setprofile: flagged as calls above


_INTROSPECTED = frozenset({"sys", "gc", "inspect", "__main__", "builtins", "__builtins__"})


def _introspection(tree: ast.AST, aliases: dict[str, str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Attribute) and node.attr in _FRAME_ATTRS:
            what = f"`.{node.attr}`"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = aliases.get(node.value.id, node.value.id)
            if (owner, node.attr) in _INTROSPECTION:
                what = f"`{owner}.{node.attr}`"
            elif node.attr == "__dict__" and owner in _INTROSPECTED:
                what = "a module's namespace read as a dict"  # sys.__dict__["modules"]
        elif (isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "modules" and isinstance(node.value.value, ast.Name)
              and aliases.get(node.value.value.id, node.value.value.id) == "sys"):
            what = "a module object from `sys.modules`"  # `"x" in sys.modules` (the set-up cell's test) is not one
        elif isinstance(node, ast.Name) and aliases.get(node.id, "").rpartition(".")[::2] in _INTROSPECTION:
            what = f"`{aliases[node.id]}`"  # from sys import _getframe
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) > 1
              and isinstance(node.args[0], ast.Name) and aliases.get(node.args[0].id, node.args[0].id) in ("sys", "inspect", "gc")
              and not isinstance(node.args[1], ast.Constant)):
            what = f"a function of `{aliases.get(node.args[0].id, node.args[0].id)}` by a computed name"
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars" and node.args
               and isinstance(node.args[0], ast.Name) and aliases.get(node.args[0].id, node.args[0].id) in _INTROSPECTED):
            what = "a module's namespace read as a dict"  # vars(sys)["modules"]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n == "__main__" or n.partition(".")[0] == "grading" for n in names):
                what = "an import of the grader's own code"
        if what:
            found.append(f"reaches the frames or objects of the code that runs it ({what}, line {node.lineno})")
    return found


# --------------------------------------------------------------------------------------------
# grade cells, here




@dataclass
class Verdict:
    """The outcome of a grade cell run here: whether it raised, what it printed, its properties."""

    ok: bool = True
    ename: str = ""
    evalue: str = ""
    student_raised: bool = False  # the exception came from the student's code in the sandbox
    stdout: str = ""
    seconds: float = 0.0
    outcomes: list = field(default_factory=list)  # attnkit properties the cell checked (partial credit)
    mutations: list = field(default_factory=list)  # student calls that changed their arguments in place


@dataclass
class TrustedNamespace:
    """The grader's own namespace for a notebook: given cells and grade cells run here."""

    globals: dict = field(default_factory=lambda: {"__name__": "__main__", "__builtins__": builtins})
    baselines: dict = field(default_factory=dict)  # name -> (the sandbox's tensor as a course cell left it, given cell?)
    changed: set = field(default_factory=set)  # tracked tensors an answer cell changed
    fetched: set = field(default_factory=set)  # answer names a check found in the student's namespace

    def run_trusted(self, source: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(_transform(source), "<trusted cell>", "exec"), self.globals)  # noqa: S102


def global_reads(code: str) -> set[str]:
    """Names a cell reads from its global namespace: at top level, or as globals inside functions."""
    names: set[str] = set()
    tables = [symtable.symtable(code, "<grade cell>", "exec")]
    while tables:
        table = tables.pop()
        top = table.get_type() == "module"
        names.update(s.get_name() for s in table.get_symbols() if s.is_referenced() and (top or s.is_global()))
        tables.extend(table.get_children())
    return names


def _baseline(runner: Runner, ns: TrustedNamespace, source: str, timeout: float, given: bool) -> None:
    """After a course cell: the sandbox's own copy of each small tensor it defined, to notice later changes.

    A given (locked) cell's tensors are compared before every grade cell (helpers defined in given cells
    read them too); a "try it" cell's only before the grade cells that read them.
    """
    import torch

    for name in sorted(module_binds(parse(source))):
        value = ns.globals.get(name)
        if isinstance(value, torch.Tensor) and value.numel() <= 1_000_000:
            reply = runner.request({"op": "get", "name": name}, timeout)
            if isinstance(reply.get("value"), torch.Tensor):
                ns.baselines[name] = (reply["value"], given)


def _refresh_baselines(runner: Runner, ns: TrustedNamespace, timeout: float, answer: bool = False) -> None:
    """After course code ran, what it did to the tracked tensors is the new normal; after an answer cell,
    a tracked tensor that differs is marked as changed by the answer."""
    import torch

    for name, (before, given) in list(ns.baselines.items()):
        reply = runner.request({"op": "get", "name": name}, timeout)
        now = reply.get("value")
        same = isinstance(now, torch.Tensor) and now.shape == before.shape and now.dtype == before.dtype and torch.equal(now, before)
        if answer and not same:
            ns.changed.add(name)
        elif not answer and isinstance(now, torch.Tensor):
            ns.baselines[name] = (now, given)


def _compare_given_tensors(runner: Runner, ns: TrustedNamespace, code: str, timeout: float, budget: Budget) -> None:
    """Tensors the course's given cells defined (a key matrix, inputs) that this check reads: if the student's
    notebook has changed them since, as the student's own run of the check would notice, say so."""
    import torch

    reads = global_reads(code)
    for name in sorted(n for n, (_, always) in ns.baselines.items() if always or n in reads):
        if name in ns.changed:
            budget.mutations.append(f"the notebook's `{name}` was changed by an answer cell")
            continue
        reply = runner.request({"op": "get", "name": name}, timeout)
        theirs, before = reply.get("value"), ns.baselines[name][0]
        if "raised" in reply:
            continue
        if not isinstance(theirs, torch.Tensor):
            budget.mutations.append(f"the notebook's `{name}` was replaced")
            continue
        budget.charge(theirs.numel() * theirs.element_size())
        if theirs.shape != before.shape or theirs.dtype != before.dtype or not torch.equal(theirs, before):
            budget.mutations.append(f"the notebook's `{name}` was changed")


def run_grade_cell(runner: Runner, ns: TrustedNamespace, source: str, answers: frozenset[str],
                   timeout: float, options: GradeOptions, hidden: bool = False) -> Verdict:
    """Execute a grade cell here. Only the declared ``answers`` come from the sandbox; all else is ours."""
    run = Verdict()
    start = time.monotonic()
    code = _transform(source)
    budget = Budget(options.cell_reply_bytes, write_back=not hidden, seconds=timeout, measuring="peak_memory" in code)
    local = dict(ns.globals)
    try:
        tree = ast.parse(code)
        wanted = global_reads(code) & set(answers)
        defined = set(runner.request({"op": "names"}, timeout).get("names", [])) if wanted else set()
        ns.fetched |= wanted & defined
        for name in sorted(wanted & defined):
            reply = runner.request({"op": "get", "name": name}, timeout)
            if "raised" not in reply:
                local[name] = decode(runner, checked(reply["value"], budget), timeout, budget)
        for name in sorted(wanted - defined):
            local.pop(name, None)  # not defined by the student: a NameError, as in their notebook
        _compare_given_tensors(runner, ns, code, timeout, budget)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), recording() as outcomes:
            try:
                exec(compile(tree, "<grade cell>", "exec"), local)  # noqa: S102
            finally:
                run.outcomes = list(outcomes)
        run.stdout = out.getvalue()
    except RunnerError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the verdict: any exception fails the check
        if isinstance(exc, KeyboardInterrupt):
            raise
        run.ok = False
        run.ename = getattr(exc, "student_type", None) or type(exc).__name__
        run.evalue = str(exc)
        run.student_raised = isinstance(exc, StudentError)
    bound = used_and_bound(ast.parse(code))[1]
    for name in bound:  # what the cell defined stays, for later cells (answers are always fetched anew)
        if name in local and name not in answers:
            ns.globals[name] = local[name]
    run.mutations = list(budget.mutations)
    run.seconds = time.monotonic() - start
    return run


# --------------------------------------------------------------------------------------------
# the notebook


def _stream(name: str, text: str) -> list:
    return [nbformat.v4.new_output("stream", name=name, text=text)] if text else []


def _error(ename: str, evalue: str, student_raised: bool = False) -> dict:
    error = nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])
    if student_raised:
        error["student_raised"] = True
    return error


def _text_of(value, limit: int) -> str:
    """A field of a reply as text: only a real ``str`` counts (a crafted list is never expanded), cut to ``limit``."""
    return value[:limit] if isinstance(value, str) else ""


def _figures(reply: dict, log: ExecLog, after_hidden: bool = False) -> list:
    """The student's figures as display outputs: PNG only, checked, size-capped (never HTML).

    A figure drawn after a hidden check called the student's code may show what that code kept of the
    hidden inputs: it is marked, and the student's feedback page leaves it out (the instructor still sees it).
    """
    outputs = []
    figures = reply.get("figures")
    for figure in (figures if isinstance(figures, list) else [])[:8]:
        if not isinstance(figure, dict) or not isinstance(figure.get("png"), str):
            continue
        try:
            data = base64.b64decode(figure["png"][: 3 * MAX_FIGURE], validate=True)
        except ValueError:
            continue
        if data.startswith(PNG) and len(data) <= MAX_FIGURE:
            if log.figure_bytes + len(data) > MAX_FIGURES:
                outputs += _stream("stdout", f"(figure left out: this notebook's figures passed {MAX_FIGURES >> 20} MiB)\n")
                break
            log.figure_bytes += len(data)
            outputs.append(nbformat.v4.new_output(
                "display_data", data={"image/png": base64.b64encode(data).decode(), "text/plain": "<Figure>"},
                metadata={AFTER_HIDDEN: True} if after_hidden else {}))
    return outputs


def _is_given(cell) -> bool:
    """Locked code cells that are not tests: set-up and given code (restored from the source by intake)."""
    meta = cell.metadata.get("nbgrader", {})
    return meta.get("locked", False) and not meta.get("grade", False) and not meta.get("solution", False)


def describe_cell(template: Template, index: int) -> str:
    for part in template.parts.values():
        if part.index == index:
            kind = {"answer": "answer", "test": "test"}.get(part.kind, part.kind + " cell")
            return f"cell {index + 1} ({kind} `{part.grade_id}`)"
    return f"cell {index + 1}"


def _property(outcome, hidden: bool, after_hidden: bool = False) -> PropertyResult:
    """One recorded ``attnkit.prop`` as a result: a hidden one never repeats the student's own text, nor
    does any check that runs after a hidden check has called the student's code (that code may have kept
    the hidden inputs and put them into its exception messages)."""
    reason = ""
    if not outcome.passed:
        cause = outcome.cause
        if (hidden or after_hidden) and isinstance(cause, StudentError):
            reason = f"your code raised {quotable_type(getattr(cause, 'student_type', type(cause).__name__))}"
        elif hidden and isinstance(cause, NotImplementedError):
            reason = "not answered yet"
        else:
            reason = str(outcome.error)[:400]
            prefix = f"{outcome.name}: "
            reason = reason[len(prefix):] if reason.startswith(prefix) else reason
            if hidden or after_hidden:  # (the student's own run of a visible check shows its whole message)
                reason = _without_student_values(reason)
    return PropertyResult(outcome.name, 0.0, bool(outcome.passed), reason, hidden)


def _without_student_values(reason: str) -> str:
    """A check's words up to what the student's code produced: "expected shape (3, 4, 6), got ..." keeps
    what was expected and drops what came back, which the student's code chose.  Used for hidden checks and
    for every check after one: code that kept a hidden check's inputs can return a shape or a 300-digit
    number that spells them out."""
    head, got, tail = reason.partition(" got ")
    if not got:
        return reason
    raised = re.match(r"([A-Za-z_]\w*):", tail)  # "got NotImplementedError: <the student's message>"
    if raised:
        return f"{head} got {quotable_type(raised.group(1))}"
    return f"{head} got something else"


def _grade(runner: Runner, ns: TrustedNamespace, part, answers: frozenset[str], deadline: float,
           options: GradeOptions, now: float, after_hidden: bool = False) -> CellRun:
    """Decide a test cell here, segment by segment; its ``attnkit.prop`` blocks share its points equally."""
    run = CellRun(CellStatus.OK, 0.0)
    outcomes = []
    for segment in part.segments:
        left = max(deadline - time.perf_counter(), 0.1)
        verdict = run_grade_cell(runner, ns, segment.source, answers, min(options.cell_timeout, left), options, segment.hidden)
        run.hidden_ran = run.hidden_ran or segment.hidden
        found = [_property(o, segment.hidden, after_hidden) for o in verdict.outcomes]
        after_hidden = after_hidden or segment.hidden
        run.properties += found
        outcomes += verdict.outcomes
        failed = sum(not p.passed for p in found)
        if failed and not segment.hidden:  # graded, a check that fails does not stop the cell: its last line must not say "passed"
            said = f"{failed} of {len(found)} visible checks failed"
            verdict.stdout = re.sub(r"(?m)^(.*?)visible checks passed\s*$", lambda m, said=said: m.group(1) + said, verdict.stdout)
        if verdict.mutations:  # no answer of this course may change its inputs: a property of its own
            run.properties.append(PropertyResult("leaves its inputs unchanged", 0.0, False,
                                                 "; ".join(dict.fromkeys(verdict.mutations))[:300], segment.hidden))
        if not segment.hidden:
            run.visible += _stream("stdout", verdict.stdout)
        if not verdict.ok:
            run.status = CellStatus.ERROR
            quiet = after_hidden and verdict.student_raised  # its message may carry what it kept of hidden inputs
            run.error = _error(verdict.ename, WITHHELD if quiet else verdict.evalue, verdict.student_raised)
            run.error_segment_hidden = segment.hidden
            break
    if run.properties:
        share = (part.points or 0.0) / len(run.properties)
        for p in run.properties:
            p.points = share
        unanswered = any(isinstance(o.error, NotImplementedError) or isinstance(o.cause, NotImplementedError)
                         or (isinstance(o.cause, NameError) and getattr(o.cause, "name", None) in answers) for o in outcomes)
        hidden = [p for p in run.properties if p.hidden]
        no_value_right = bool(hidden) and not any(p.passed for p in hidden)
        if run.error is None:
            # No share for an answer that still raises NotImplementedError, nor for one that gets no hidden
            # check of its values right: shapes and side conditions alone earn nothing.
            run.score = 0.0 if unanswered or no_value_right else sum(share for p in run.properties if p.passed)
            if unanswered or no_value_right:
                why = ("not counted: the answer is not finished" if unanswered
                       else "not counted: no check of the values (after hand-in) passed")
                for p in run.properties:
                    if p.passed:
                        p.reason = why
        if unanswered:  # checks that tripped over what the unfinished answer never defined: say so, not NameError 'out'
            for p in run.properties:
                if not p.passed and "not answered yet" not in p.reason and re.search(r"NameError|NotImplementedError", p.reason):
                    p.reason = "not answered yet: this answer, or another TODO it calls, is not finished, so this check could not run"
    run.seconds = time.perf_counter() - now
    return run


def execute(nb: nbformat.NotebookNode, template: Template, options: GradeOptions, budget: float) -> ExecLog:
    """Run ``nb`` (outputs written into it) with student code sandboxed and verdicts decided here."""
    log = ExecLog()
    t0 = time.perf_counter()
    first = first_cells(template)
    if any(index >= len(nb.cells) or nb.cells[index].source != source for index, source in first.items()):
        first = {}  # not the course's cells as released: this submission runs every cell itself
    try:
        runner = runner_for(options)
        prepared = dict(zip(first, runner.begin(tuple(first.values()))))
    except (RunnerError, OSError) as exc:
        close_runners()
        log.start_error = f"the sandbox could not start: {exc}"
        log.start_seconds = time.perf_counter() - t0
        return log
    log.start_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    deadline = t0 + budget
    tests = {p.index: p for p in template.parts.values() if p.kind == "test"}
    answers = frozenset(template.answer_names)
    ns = TrustedNamespace()
    try:
        _run_cells(nb, template, options, runner, ns, tests, answers, deadline, log, prepared)
        log.tampering += defined_only_at_run_time(nb, ns.fetched)
    finally:
        runner.deadline = None
        try:
            if runner.alive:
                runner.end()
        except RunnerError:
            close_runners()
        log.disk_read_bytes = runner.disk_read_bytes
    log.run_seconds = time.perf_counter() - t1
    return log


def _check_inputs(template: Template) -> frozenset[str]:
    """Names the grade cells read: the course's own cells that bind them also run here."""
    names: set[str] = set()
    for part in template.parts.values():
        for segment in part.segments:
            with contextlib.suppress(SyntaxError, ValueError):
                names |= global_reads(_transform(segment.source))
    return frozenset(names - template.answer_names)


def last_graded_cell(template: Template) -> int:
    """The index of the last code cell that can change a score: the last test or code answer.

    Code after it cannot reach any verdict (it runs after every check), so grading stops there;
    its cells get a one-line note instead of outputs.
    """
    return max((p.index for p in template.parts.values() if p.kind == "test" or (p.kind == "answer" and p.cell_type == "code")),
               default=-1)


WITHHELD = "(message not shown: raised after a hidden check had called your code)"
NOT_RUN = "(not run while grading: this cell comes after the last check, so it cannot change a score)\n"


def _run_cells(nb, template, options, runner, ns, tests, answers, deadline, log, prepared: dict[int, dict]) -> None:
    """Every cell in order; the course's first cells (``prepared``: index -> reply) already ran, once per zygote."""
    answer_cells = {p.index for p in template.answers}
    hidden_seen = False
    needed = _check_inputs(template)
    protected = frozenset(template.context_names)
    installs = pip_installed(c.source for c in nb.cells if c.cell_type == "code")
    last = last_graded_cell(template)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if index > last:
            cell.outputs = _stream("stdout", NOT_RUN)
            log.not_run.append(index)
            continue
        now = time.perf_counter()
        if now >= deadline:
            log.stopped_at = index
            log.stop_reason = f"the notebook's time budget ({options.notebook_timeout:g} s) ran out before {describe_cell(template, index)}"
            log.events.append(log.stop_reason)
            return
        limit = min(options.cell_timeout, deadline - now)
        runner.deadline = time.monotonic() + limit
        part = tests.get(index)
        try:
            if part is None:
                given = _is_given(cell)
                if index in answer_cells:
                    log.tampering += [f"{describe_cell(template, index)}: {t}" for t in scan_for_tampering(cell.source, protected, installs)]
                reply = prepared.get(index) or runner.request({"op": "exec", "source": cell.source, "figures": True}, limit)
                notes = reply.get("neutralised")
                for note in (notes if isinstance(notes, list) and not hidden_seen else [])[:20]:
                    log.neutralised.append(f"{describe_cell(template, index)}: {_text_of(note, 200)}")
                # Notes are the sandbox's own words, but the student's code can add to them: none after a
                # hidden check has called that code (they could carry its inputs into the feedback).
                error = None if reply.get("ok") is True else _error(_text_of(reply.get("ename"), 100) or "Error",
                                                                    _text_of(reply.get("evalue"), 2000))
                exposed = hidden_seen and not given  # student code that ran after a hidden check had called it
                if exposed:  # its words may carry what it kept of the hidden inputs: for the instructor's eyes only
                    cell.metadata[AFTER_HIDDEN] = True
                cell.outputs = (_stream("stdout", _text_of(reply.get("stdout"), 20_000))
                                + _stream("stderr", _text_of(reply.get("stderr"), 20_000))
                                + _figures(reply, log, hidden_seen) + ([error] if error else []))
                if ns.baselines:
                    _refresh_baselines(runner, ns, limit, answer=index in answer_cells)
                if given:
                    ns.run_trusted(cell.source)
                    _baseline(runner, ns, cell.source, limit, given=True)
                elif index not in answer_cells and needed & module_binds(parse(cell.source)):
                    # the course's own "try it" code defines inputs a check reads: build them here too
                    run_grade_cell(runner, ns, cell.source, answers, limit, options)
                    _baseline(runner, ns, cell.source, limit, given=False)
                shown = error
                if exposed and error is not None:  # the feedback quotes its type only, and the system's own words for memory
                    memory = re.search(r"(can't|cannot) allocate memory|out of memory", str(error.get("evalue")), re.I)
                    shown = _error(quotable_type(error["ename"]), "out of memory (can't allocate memory)" if memory else "")
                log.runs[index] = CellRun(CellStatus.OK if error is None else CellStatus.ERROR, time.perf_counter() - now, error=shown)
                continue
            runner.request({"op": "exec", "source": part.release_source or cell.source}, limit)
            if ns.baselines:  # the visible check's own code may change its inputs: not the answer's doing
                _refresh_baselines(runner, ns, limit)
            run = _grade(runner, ns, part, answers, deadline, options, now, after_hidden=hidden_seen)
            hidden_seen = hidden_seen or run.hidden_ran
            cell.outputs = list(run.visible) + ([run.error] if run.error is not None and not run.error_segment_hidden else [])
            log.runs[index] = run
        except RunnerInterrupted:
            # After a hidden check the seconds are not said: code that kept a hidden input can sleep until the
            # notebook's time left (the limit of a late cell) spells part of it out.
            said = "its time limit" if hidden_seen else f"{limit:.0f} s"
            error = _error("TimeoutError", f"the cell ran for more than {said} and was interrupted")
            log.runs[index] = CellRun(CellStatus.TIMEOUT, time.perf_counter() - now, error=error)
            cell.outputs = [error]
            log.events.append(f"{describe_cell(template, index)} timed out after {said} and was interrupted")
        except RunnerError as exc:
            timed_out = exc.reason == "timeout"
            if timed_out:
                said = "its time limit" if hidden_seen else f"{limit:.0f} s"
                log.stop_reason = (f"{describe_cell(template, index)} ran for more than {said} and the kernel "
                                   "did not respond to an interrupt: it was stopped")
            elif exc.reason == "protocol":  # the submission sent what the grader refuses to read: it was stopped
                # After a hidden check the reason is not given: what is wrong with a forged reply is the sender's choice.
                why = "" if hidden_seen else f" ({exc.detail or exc.reason})"
                log.stop_reason = (f"the notebook's process was stopped while running {describe_cell(template, index)}: "
                                   f"it sent a reply the grader refuses{why}")
            else:
                detail = exc.detail or exc.reason
                if hidden_seen and not re.search(r"signal (9|24) |memory limit", detail):
                    # how code that ran after a hidden check ended is its choice (an exit status, a signal): 8 bits
                    # of what it kept.  A limit's kill is said; any other end is not.
                    detail = "how it ended is not said: it ran after a hidden check"
                log.stop_reason = f"the kernel died while running {describe_cell(template, index)} ({detail})"
            error = _error("TimeoutError" if timed_out else "DeadKernelError", log.stop_reason)
            log.runs[index] = CellRun(CellStatus.TIMEOUT if timed_out else CellStatus.DIED, time.perf_counter() - now, error=error)
            cell.outputs = [error]
            log.stopped_at = index
            log.events.append(log.stop_reason)
            if exc.reason == "runner died":
                close_runners()
            return
        except Exception as exc:  # a given cell failed in the trusted process: the template itself is broken
            log.stopped_at = index
            log.stop_reason = f"internal grader error in {describe_cell(template, index)}: {type(exc).__name__}: {exc}"
            log.events.append(log.stop_reason)
            return
