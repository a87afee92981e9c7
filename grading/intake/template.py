"""The structure a submission is graded against: the source notebook, as nbgrader sees it.

A :class:`Template` is the solution notebook with every answer replaced by its stub (nbgrader's
own ``ClearSolutions``), the locked cells and the test cells *with* their hidden tests, and the
checksums nbgrader computes.  It is what ``nbgrader autograde`` would execute after restoring the
locked cells from the gradebook: :mod:`grading.intake.mapping` only fills the answer cells in.

It also lists, for the grader and the feedback:

* ``answers``: the cells students write (code or markdown), with the names each code answer
  defines (derived from the *solution* with :mod:`ast`), used to find answers whose metadata is
  lost;
* ``questions``: the graded cells, in notebook order (autograded tests, manually graded
  answers and tasks), with their points;
* for each test cell, its *segments*: the visible checks and the hidden tests, executed one
  after the other so that a failure can be attributed to the visible or to the hidden part
  (the feedback then shows only the assertion message of a hidden failure).
"""

from __future__ import annotations

import ast
import builtins
import copy
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager
from nbgrader import utils as nbutils
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

from grading.course import load_config

BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"
BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__", "__file__", "get_ipython", "display", "In", "Out"}

_transformer = TransformerManager()


@lru_cache(maxsize=4096)
def to_python(source: str) -> str:
    """IPython syntax (magics, ``!shell``) to plain Python, as the kernel would run it (cached: most cells
    of a submission are the released notebook's own)."""
    try:
        return _transformer.transform_cell(source)
    except Exception:  # noqa: BLE001 - malformed input: let ast report the syntax error
        return source


def parse(source: str) -> ast.Module | None:
    """The module of a cell (after IPython transforms), or None on a syntax error."""
    try:
        with warnings.catch_warnings():  # invalid escape sequences in students' strings
            warnings.simplefilter("ignore")
            return ast.parse(to_python(source))
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return None


def _target_names(target: ast.AST) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(t) for t in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def statement_binds(node: ast.stmt, imports: bool = True) -> set[str]:
    """Names a top-level statement binds in the module namespace."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Assign):
        return set().union(*(_target_names(t) for t in node.targets))
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return _target_names(node.target)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        if not imports:
            return set()
        return {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    if isinstance(node, (ast.For, ast.AsyncFor)):
        names = _target_names(node.target)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        names = set().union(*(_target_names(i.optional_vars) for i in node.items if i.optional_vars)) if node.items else set()
    else:
        names = set()
    # compound statements at top level (if/try/with/for) bind what their bodies bind
    for attr in ("body", "orelse", "finalbody"):
        for child in getattr(node, attr, []) or []:
            names |= statement_binds(child, imports)
    for handler in getattr(node, "handlers", []) or []:
        for child in handler.body:
            names |= statement_binds(child, imports)
    return names


def _base_name(target: ast.AST) -> str | None:
    while isinstance(target, (ast.Subscript, ast.Attribute)):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


def statement_writes(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds or modifies in place (``x[2] = ...``, ``x.a += 1``)."""
    names = statement_binds(node)
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    for target in targets:
        for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
            if isinstance(t, (ast.Subscript, ast.Attribute)):
                base = _base_name(t)
                if base:
                    names.add(base)
    return names


def statement_dumps(source: str) -> set[str]:
    """``ast.dump`` of each top-level statement of a cell (formatting and comments ignored)."""
    tree = parse(source)
    return {ast.dump(s) for s in tree.body} if tree is not None else set()


def module_binds(tree: ast.Module | None, imports: bool = True) -> set[str]:
    if tree is None:
        return set()
    return set().union(*(statement_binds(s, imports) for s in tree.body)) if tree.body else set()


def used_and_bound(tree: ast.AST) -> tuple[set[str], set[str]]:
    """All names read anywhere in ``tree``, and all names bound anywhere (coarse, conservative)."""
    used, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound |= set(node.names)
    return used, bound


def free_names(source: str) -> set[str]:
    """Global names ``source`` needs from elsewhere (not builtins, not bound in it)."""
    tree = parse(source)
    if tree is None:
        return set()
    used, bound = used_and_bound(tree)
    return used - bound - BUILTIN_NAMES


def same_code(a: str, b: str) -> bool:
    """Equal as Python (formatting and comments ignored) or, if either does not parse, as text."""
    ta, tb = parse(a), parse(b)
    if ta is not None and tb is not None:
        return ast.dump(ta) == ast.dump(tb)
    return normalise_text(a) == normalise_text(b)


def normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


@dataclass(frozen=True)
class Segment:
    """A consecutive part of a test cell: visible checks, or hidden tests."""

    source: str
    hidden: bool


@dataclass
class Part:
    """One nbgrader cell of the template."""

    grade_id: str
    index: int
    cell_type: str
    kind: str  # "answer" (students write it) | "test" (autograded) | "locked" | "task"
    points: float | None = None  # graded cells only
    graded_by: str | None = None  # "auto" | "manual" for graded cells
    names: frozenset[str] = frozenset()  # code answers: names the solution defines
    stub: str = ""  # answers: the released stub
    release_source: str = ""  # locked cells: what students see (hidden tests removed)
    segments: tuple[Segment, ...] = ()  # tests
    answer: str | None = None  # tests: the answer cell they check (the nearest one above)
    title: str = ""  # the question in words: the nearest markdown heading above it (or above its answer)

    @property
    def is_question(self) -> bool:
        return self.graded_by is not None


@dataclass
class Template:
    assignment: str
    notebook: str
    source: Path
    nb: nbformat.NotebookNode  # solutions cleared, hidden tests kept, nbgrader checksums
    parts: dict[str, Part] = field(default_factory=dict)  # by grade_id, in notebook order
    context_names: frozenset[str] = frozenset()  # bound by the template's own (non-answer) code
    markdown: tuple[str, ...] = ()  # normalised text of the non-answer markdown cells
    anchors: frozenset[str] = frozenset()  # ast dumps of the statements of non-answer code cells

    @property
    def answers(self) -> list[Part]:
        return [p for p in self.parts.values() if p.kind == "answer"]

    @property
    def questions(self) -> list[Part]:
        return [p for p in self.parts.values() if p.is_question]

    @property
    def answer_names(self) -> set[str]:
        return set().union(*(p.names for p in self.answers)) if self.answers else set()

    @property
    def max_score(self) -> float:
        return sum(p.points or 0 for p in self.questions)

    def fresh_notebook(self) -> nbformat.NotebookNode:
        return copy.deepcopy(self.nb)


def split_hidden(source: str) -> tuple[Segment, ...]:
    """Split a test cell at nbgrader's hidden-test delimiters, when that is safe.

    Each segment must compile on its own (delimiters at the top level); otherwise the whole
    cell is one segment, marked hidden if it contains hidden tests (its failures are then
    reported as assertion messages only, never as tracebacks).
    """
    if BEGIN_HIDDEN not in source:
        return (Segment(source, False),)
    segments: list[Segment] = []
    current: list[str] = []
    hidden = False
    nested = False
    for line in source.splitlines(keepends=True):
        stripped = line.strip()
        if BEGIN_HIDDEN in stripped or END_HIDDEN in stripped:
            nested |= line[: len(line) - len(line.lstrip())] != ""
            if "".join(current).strip():
                segments.append(Segment("".join(current), hidden))
            current = []
            hidden = BEGIN_HIDDEN in stripped
            continue
        current.append(line)
    if "".join(current).strip():
        segments.append(Segment("".join(current), hidden))
    if nested or any(parse(s.source) is None for s in segments):
        return (Segment(source, True),)
    return tuple(segments)


def _preprocess(nb: nbformat.NotebookNode, steps, config) -> nbformat.NotebookNode:
    resources: dict = {}
    for step in steps:
        nb, resources = step(config=config).preprocess(nb, resources)
    return nb


@lru_cache(maxsize=32)
def _load(source: str, mtime_ns: int, assignment: str, notebook: str) -> Template:  # noqa: ARG001 - cache key
    config = load_config()
    solution = nbformat.read(source, as_version=4)
    nb = _preprocess(copy.deepcopy(solution), (LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums), config)
    release = _preprocess(copy.deepcopy(nb), (ClearHiddenTests,), config)
    template = Template(assignment=assignment, notebook=notebook, source=Path(source), nb=nb)
    context: set[str] = set()
    markdown: list[str] = []
    anchors: set[str] = set()
    solution_names: dict[str, set[str]] = {}
    last_answer = None
    heading = ""
    titles: dict[str, str] = {}
    for index, (cell, sol, rel) in enumerate(zip(nb.cells, solution.cells, release.cells)):
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if cell.cell_type == "markdown" and not nbutils.is_solution(cell):
            prompt = re.match(r"\s*\*\*Written answer:\s*(.+?)\*\*", cell.source)
            heading = prompt.group(1).strip(" .:") if prompt else (_heading(cell.source) or heading)
        if cell.cell_type == "code" and not nbutils.is_solution(cell):
            anchors |= statement_dumps(cell.source) | statement_dumps(rel.source)
        if not gid or not (nbutils.is_grade(cell) or nbutils.is_solution(cell) or nbutils.is_locked(cell) or nbutils.is_task(cell)):
            if cell.cell_type == "code":
                context |= module_binds(parse(cell.source))
            elif cell.cell_type == "markdown":
                markdown.append(normalise_text(cell.source))
            continue
        graded_by = None
        if nbutils.is_grade(cell) or nbutils.is_task(cell):
            graded_by = "manual" if (nbutils.is_solution(cell) or cell.cell_type != "code" or nbutils.is_task(cell)) else "auto"
        points = float(meta["points"]) if graded_by else None
        if nbutils.is_solution(cell):
            solution_names[gid] = module_binds(parse(sol.source), imports=False) if cell.cell_type == "code" else set()
            part = Part(gid, index, cell.cell_type, "answer", points, graded_by, frozenset(), stub=cell.source)
            last_answer = gid
        elif nbutils.is_task(cell):
            part = Part(gid, index, cell.cell_type, "task", points, graded_by, release_source=rel.source)
            markdown.append(normalise_text(cell.source))
        elif graded_by == "auto":
            part = Part(
                gid, index, cell.cell_type, "test", points, graded_by,
                release_source=rel.source, segments=split_hidden(cell.source), answer=last_answer,
            )
            context |= module_binds(parse(cell.source))
        else:
            part = Part(gid, index, cell.cell_type, "locked", points, graded_by, release_source=rel.source)
            if cell.cell_type == "code":
                context |= module_binds(parse(cell.source))
            else:
                markdown.append(normalise_text(cell.source))
        check = re.match(r"#\s*Check:\s*(.+)", cell.source) if part.kind == "test" else None
        if check:  # the course's convention: a check cell starts with `# Check: <title>`
            part.title = check.group(1).strip(" .")
        else:
            part.title = titles.get(part.answer, "") if part.kind == "test" and part.answer else heading
        part.title = part.title[:1].upper() + part.title[1:]
        titles[gid] = part.title
        template.parts[gid] = part
    # an answer is recognised by the names its solution defines, except names the template's own
    # code also binds or that several answers define (helper variables such as a scale `S`)
    for gid, names in solution_names.items():
        shared = set().union(*(n for g, n in solution_names.items() if g != gid)) if len(solution_names) > 1 else set()
        own = names - context - shared
        template.parts[gid].names = frozenset(own or (names - context) or names)
    template.context_names = frozenset(context - template.answer_names)
    template.markdown = tuple(markdown)
    template.anchors = frozenset(anchors)
    return template


def _heading(markdown: str) -> str:
    """The last heading of a markdown cell, in plain words: "### TODO: `masked_softmax(X, valid_lens)`"
    -> "Masked softmax", "## 2. Why divide by $\\sqrt d$?" -> "Why divide by $\\sqrt d$?"."""
    found = ""
    for line in markdown.splitlines():
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = match.group(1).strip("* ")
        for _ in range(2):
            text = re.sub(r"^(TODO|Exercise(\s+\d+)?|Task)\s*:?\s*", "", text, flags=re.I)
            text = re.sub(r"^(\d+(\.\d+)*\.?)\s+", "", text)
        code = re.fullmatch(r"`(?:class\s+)?([A-Za-z_][A-Za-z0-9_]*)[^`]*`", text)
        if code:
            name = code.group(1)
            text = name.replace("_", " ").strip().capitalize() if "_" in name or name.islower() else name
        found = text.strip(" :.") or found
    return found


def load_template(source: Path, assignment: str, notebook: str) -> Template:
    """The template of one graded notebook (cached per process while the file is unchanged)."""
    source = Path(source).resolve()
    return _load(str(source), source.stat().st_mtime_ns, assignment, notebook)
