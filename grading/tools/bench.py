"""``make bench``: grade one synthetic class with plain nbgrader and with our pipeline, and compare.

``python -m grading bench [--students 40] [--workers N] [--out DIR]``

In one run, on this machine:

1. a synthetic class (:mod:`grading.tools.synthetic`): ``--students`` students x every graded notebook,
   of the kinds plain nbgrader can grade too: mostly ``complete``, some ``partial`` (every other
   answer), some ``blank`` (the released notebook unchanged); 7 : 2 : 1.  Both graders read the
   very same files (``DIR/course/submitted``);
2. **plain nbgrader**, as an instructor runs it: a course directory (``source/`` = a copy of
   ``solutions/``, ``release/`` written by nbgrader's GenerateAssignment, a fresh sqlite
   gradebook with the students), then ``nbgrader autograde <assignment> --force`` in a
   subprocess per assignment (serial, as nbgrader is), timed on the wall clock;
3. **our pipeline at default settings** (:func:`grading.pipeline.autograde_class`, one worker per
   core, sandboxed, trusted verdicts; the same options as ``python -m grading autograde``),
   into its own gradebook, timed on the wall clock;
4. the report: submissions, seconds and submissions per minute of both, where our time goes,
   whether both graders agree on every submission's and every student's total, and, last,
   ``speedup vs nbgrader: <ratio>x`` (ratio of the wall-clock times).

Without ``--out`` everything lives in a temporary folder removed at the end; with ``--out DIR``
it stays there (nbgrader's log: ``DIR/course/nbgrader-<assignment>.log``; our report:
``DIR/ours/report``).  A benchmark, not a test: numbers depend on the machine and its load,
which is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from grading import course

# 7 complete : 2 partial : 1 blank, interleaved (a class of 2 already has a partial student).
PATTERN = ("complete", "partial", "complete", "complete", "blank", "complete", "complete", "partial", "complete", "complete")
MARKER = ".attnkit-bench"  # marks a --out folder as ours, so a rerun may clear it


def class_kinds(students: int) -> dict[str, str]:
    """student_id -> kind for a class of ``students``."""
    return {f"s{i + 1:03d}_{PATTERN[i % len(PATTERN)]}": PATTERN[i % len(PATTERN)] for i in range(students)}


def _load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        return "load average unknown"


def _venv_env() -> dict[str, str]:
    """The environment for nbgrader's subprocess: this interpreter's bin first (nbgrader calls alembic)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env.pop("JPY_PARENT_PID", None)
    return env


# --------------------------------------------------------------------------------------------
# plain nbgrader


@dataclass
class NbgraderRun:
    seconds: float = 0.0
    per_assignment: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # assignment -> the tail of its log
    scores: dict[tuple[str, str, str], dict[str, float | None]] = field(default_factory=dict)


def build_nbgrader_course(root: Path, students: list[str], assignments: list[str], cell_timeout: float) -> str:
    """An nbgrader course in ``root``: config, source/, release/ (GenerateAssignment), gradebook with students."""
    import logging

    from nbgrader.api import Gradebook
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    root = root.resolve()
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    stubs = course.load_config().ClearSolutions  # the stubs of the released notebooks
    (root / "nbgrader_config.py").write_text(
        '"""Written by `python -m grading bench`: a plain nbgrader course for the benchmark."""\n\n'
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'attention-bench'\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
        f"c.ClearSolutions.code_stub = {dict(stubs.code_stub)!r}\n"
        f"c.ClearSolutions.text_stub = {stubs.text_stub!r}\n"
        f"c.Execute.timeout = {int(cell_timeout)}\n"
    )
    for assignment in assignments:
        shutil.copytree(course.solutions() / assignment, root / "source" / assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.GenerateAssignment.force = True
    config.GenerateAssignment.create_assignment = True
    for assignment in assignments:
        config.CourseDirectory.assignment_id = assignment
        converter = GenerateAssignment(coursedir=CourseDirectory(config=config), config=config)
        converter.log.setLevel(logging.ERROR)
        converter.start()
    with Gradebook(db_url) as gb:
        for sid in students:
            gb.update_or_create_student(sid)
    return db_url


def run_nbgrader(root: Path, assignments: list[str], timeout: float | None = None) -> NbgraderRun:
    """``nbgrader autograde <assignment> --force`` for each assignment, one after another, timed."""
    nbgrader = Path(sys.executable).parent / "nbgrader"
    command = [str(nbgrader)] if nbgrader.exists() else [sys.executable, "-m", "nbgrader"]
    env = _venv_env()
    run = NbgraderRun()
    t0 = time.perf_counter()
    for assignment in assignments:
        log_path = root / f"nbgrader-{assignment}.log"
        a0 = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.run([*command, "autograde", assignment, "--force"], cwd=root, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        run.per_assignment[assignment] = time.perf_counter() - a0
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            run.failed[assignment] = f"exit status {proc.returncode}: " + " | ".join(tail)
    run.seconds = time.perf_counter() - t0
    return run


def nbgrader_scores(db_url: str) -> dict[tuple[str, str, str], dict[str, float | None]]:
    """(student, assignment, notebook) -> grade name -> score (None: awaiting a human), from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    scores: dict[tuple[str, str, str], dict[str, float | None]] = {}
    with Gradebook(db_url) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                for snb in submission.notebooks:
                    scores[(submission.student.id, assignment.name, snb.name)] = {
                        g.name: (g.manual_score if g.manual_score is not None else g.auto_score) for g in snb.grades
                    }
    return scores


# --------------------------------------------------------------------------------------------
# our pipeline


@dataclass
class OurRun:
    seconds: float = 0.0
    summary: object = None
    began: float = 0.0  # perf_counter when the workers were asked to start (run_tasks)
    ended: float = 0.0  # ... when the last result was stored
    started: float = 0.0  # ... when autograde_class was called
    arrivals: list[float] = field(default_factory=list)  # when each result reached the parent


def run_ours(submitted: Path, out: Path, db: Path, workers: int | None) -> OurRun:
    """``autograde_class`` at default settings (the options of ``python -m grading autograde``), timed.

    The parent's per-result work is timed through ``autograde_class``'s result hook.
    """
    from grading.options import GradeOptions
    from grading.pipeline import autograde_class

    run = OurRun()

    def arrived(result) -> None:
        now = time.perf_counter()
        if not run.arrivals:
            run.began = run.started
        run.arrivals.append(now)
        run.ended = now

    run.started = time.perf_counter()
    run.summary = autograde_class(submitted, out, workers=workers, db=str(db), options=GradeOptions(), progress=False,
                                  on_result=arrived)
    run.seconds = time.perf_counter() - run.started
    return run


# --------------------------------------------------------------------------------------------
# agreement


def _total(scores: dict[str, float | None]) -> float:
    return sum(s or 0 for s in scores.values())


@dataclass
class Agreement:
    submissions: int = 0  # graded by us
    same_questions: int = 0  # ... with nbgrader's score on every question (None: awaiting a human)
    students: int = 0
    same_totals: int = 0  # students whose total over all notebooks is the same
    mean_total: float = 0.0  # our mean total per student
    max_total: float = 0.0
    problems: list[str] = field(default_factory=list)


def compare(ours: dict[tuple, dict[str, float | None]], theirs: dict[tuple, dict[str, float | None]],
            max_total: float = 0.0) -> Agreement:
    """Question by question for each submission, then each student's total."""
    agree = Agreement(submissions=len(ours), max_total=max_total)
    for key in sorted(ours):
        mine, other = ours[key], theirs.get(key)
        label = "/".join(key)
        if other is None:
            agree.problems.append(f"  {label}: no result in nbgrader's gradebook")
            continue
        diffs = [f"{gid}: ours {mine.get(gid)}, nbgrader {other.get(gid)}"
                 for gid in sorted(set(mine) | set(other)) if mine.get(gid) != other.get(gid)]
        if not diffs:
            agree.same_questions += 1
        else:
            agree.problems.append(f"  {label}: total ours {_total(mine):g}, nbgrader {_total(other):g} ({'; '.join(diffs)})")
    for key in sorted(set(theirs) - set(ours)):
        agree.problems.append(f"  {'/'.join(key)}: graded by nbgrader only")
    students = sorted({k[0] for k in ours} | {k[0] for k in theirs})
    totals = {s: sum(_total(v) for k, v in ours.items() if k[0] == s) for s in students}
    agree.students = len(students)
    agree.same_totals = sum(1 for s in students if totals[s] == sum(_total(v) for k, v in theirs.items() if k[0] == s))
    agree.mean_total = statistics.fmean(totals.values()) if totals else 0.0
    return agree


# --------------------------------------------------------------------------------------------
# the run


def _prepare(out: Path | None) -> tuple[Path, bool]:
    if out is None:
        return Path(tempfile.mkdtemp(prefix="attnkit-bench-")), True
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise SystemExit(f"error: {out} is not empty and not a previous benchmark's folder; choose another --out")
        for name in ("course", "ours"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m grading bench\n")
    return out, False


def _rate(n: int, seconds: float) -> float:
    return n / seconds * 60 if seconds > 0 else 0.0


def bench(students: int = 40, workers: int | None = None, out: Path | None = None, cell_timeout: float = 120.0,
          stream=None) -> int:
    stream = stream or sys.stdout

    def say(text: str = "") -> None:
        stream.write(text + "\n")
        stream.flush()

    from grading.execution.sandbox import SandboxUnavailable, check_available
    from grading.tools import synthetic

    try:
        check_available()
    except SandboxUnavailable as exc:
        print(f"error: our pipeline's default settings need the sandbox: {exc}", file=sys.stderr)
        return 3
    base, temporary = _prepare(out)
    try:
        notebooks = course.notebooks()
        assignments = sorted({nb.assignment for nb in notebooks})
        kinds = class_kinds(students)
        root = base / "course"
        submitted = root / "submitted"
        root.mkdir(parents=True)
        synthetic.make_class(submitted, kinds, notebooks)
        n = len(kinds) * len(notebooks)
        mix = ", ".join(f"{sum(1 for k in kinds.values() if k == kind)} {kind}" for kind in dict.fromkeys(PATTERN))
        cores = os.cpu_count() or 1
        n_workers = cores if workers is None else workers
        say(f"benchmark: {len(kinds)} students x {len(notebooks)} notebooks = {n} submissions ({mix}); "
            f"{cores} cores; {_load()}")
        say(f"folder: {base}" + ("  (temporary)" if temporary else ""))

        import nbgrader

        db_url = build_nbgrader_course(root, list(kinds), assignments, cell_timeout)
        say(f"== plain nbgrader {nbgrader.__version__}: `nbgrader autograde <assignment> --force` x {len(assignments)}, serial ...")
        theirs = run_nbgrader(root, assignments)
        theirs.scores = nbgrader_scores(db_url)
        say(f"   done ({_load()})")

        say(f"== ours: autograde_class, {n_workers} worker(s), sandboxed, trusted verdicts ...")
        mine = run_ours(submitted, base / "ours", base / "ours" / "gradebook.db", workers)
        say(f"   done ({_load()})")

        summary = mine.summary
        results = [r for r in summary.results if not r.submission.startswith("(missing)")]
        our_rate, their_rate = _rate(len(results), mine.seconds), _rate(n, theirs.seconds)
        say()
        say(f"nbgrader autograde: {n} submissions in {theirs.seconds:.1f} s = {their_rate:.1f} submissions/min "
            f"({theirs.seconds / n:.2f} s per submission, serial)")
        say(f"ours:               {len(results)} submissions in {mine.seconds:.1f} s = {our_rate:.1f} submissions/min "
            f"({mine.seconds / max(len(results), 1):.2f} s per submission, {n_workers} worker(s))")
        for assignment, seconds in theirs.per_assignment.items():
            say(f"  nbgrader {assignment}: {seconds:.1f} s for {len(kinds)} submissions = {seconds / max(len(kinds), 1):.2f} s each "
                "(one `nbgrader autograde` process: its start, then per submission a kernel start, `import torch`, the cells, "
                "scoring, a gradebook commit)")
        for assignment, why in theirs.failed.items():
            say(f"  nbgrader FAILED on {assignment}: {why}")

        _breakdown(say, mine, results, n_workers)

        ours_scores = {r.key: {q.grade_id: q.score for q in r.questions} for r in results}
        max_total = sum(q.max_score for r in results if r.student_id == results[0].student_id for q in r.questions
                        if q.graded_by == "auto") if results else 0.0
        agree = compare(ours_scores, theirs.scores, max_total)
        line = (f"{agree.same_questions}/{agree.submissions} submissions with the same score on every question, "
                f"{agree.same_totals}/{agree.students} students with the same total "
                f"(mean {agree.mean_total:.1f} of {agree.max_total:g} autograded points)")
        if not agree.problems:
            say(f"agreement: {line}")
        else:
            say(f"agreement: MISMATCH: {line}; the others:")
            for problem in agree.problems:
                say(problem)
        errors = [r for r in results if r.has_errors]
        if errors:
            say(f"note: {len(errors)} of our results have error rows (see {base / 'ours' / 'report'})")
        if summary.changed_files:
            say(f"WARNING: {len(summary.changed_files)} submitted file(s) changed during the benchmark")
        ratio = theirs.seconds / mine.seconds if mine.seconds > 0 else float("inf")
        say(f"speedup vs nbgrader: {ratio:.1f}x")
        return 1 if theirs.failed or len(results) != n else 0
    finally:
        if temporary:
            shutil.rmtree(base, ignore_errors=True)


def _breakdown(say, run: OurRun, results, workers: int) -> None:
    """Our time per submission: what the workers spent, what the parent spent, and what is left of the wall."""
    n = len(results)
    if not n:
        return
    timing = lambda key: [r.timings.get(key, 0.0) for r in results]  # noqa: E731
    read, start, execute, total = timing("read"), timing("start"), timing("run"), timing("total")
    other = [max(t - a - b - c, 0.0) for t, a, b, c in zip(total, read, start, execute)]
    mean = statistics.fmean
    cold = sorted(start, reverse=True)[: max(workers, 1)]
    warm = sorted(start)[: max(n - len(cold), 0)]
    w = max(workers, 1)
    wall = run.seconds / n
    busy = sum(total) / w / n  # wall per submission if the workers were never idle
    store = sum(r.timings.get("store", 0.0) for r in results) / n
    first = (run.arrivals[0] - run.began) if run.arrivals else 0.0
    say(f"ours, per submission (means over {n}; worker seconds unless said; {w} worker(s) in parallel):")
    say(f"  start      {mean(start):6.3f} s  fresh child forked from the warm zygote in the worker's sandbox"
        + (f" (warm: median {statistics.median(warm):.3f} s; the {len(cold)} cold start(s), bwrap + zygote `import torch`: "
           f"{', '.join(f'{c:.1f}' for c in cold)} s)" if warm else ""))
    say(f"  execution  {mean(execute):6.3f} s  the notebook's cells in the sandbox + the trusted verdicts (test cells) in the worker")
    say(f"  intake     {mean(read):6.3f} s  hash, read and map the submission onto the template")
    say(f"  scoring    {mean(other):6.3f} s  template, data files, scores, executed notebook (rest of the worker's total)")
    say(f"  = worker   {mean(total):6.3f} s  per submission; / {w} worker(s) = {busy:.3f} s of wall")
    say(f"  writing    {store:6.3f} s  parent, serial, overlapping the workers: autograded notebook, feedback HTML, "
        "gradebook commit, result JSON")
    say(f"  overhead   {max(wall - busy, 0.0):6.3f} s  of wall not covered by busy workers: set-up (gradebook, discovery: "
        f"{run.began - run.started:.1f} s), pool start (workers forked, each starts its sandbox: first result after {first:.1f} s), "
        f"the tail, then grades.csv and the report ({run.started + run.seconds - run.ended:.1f} s)")
    say(f"  = wall     {wall:6.3f} s  per submission ({run.seconds:.1f} s / {n})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return bench(args.students, args.workers, args.out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def positive_int(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError("must be >= 1")
        return value

    parser.add_argument("--students", type=positive_int, default=40, help="students in the synthetic class (default 40)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help=f"our pipeline's workers (default: the number of cores, here {os.cpu_count()}); nbgrader is serial")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the class, nbgrader's course and our output here (default: a temporary folder, removed)")


if __name__ == "__main__":
    sys.exit(main())
