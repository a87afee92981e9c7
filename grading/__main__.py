"""Command line: ``python -m grading <command>`` (also installed as ``attention-grade``).

Run it from the course folder (the one with ``nbgrader_config.py`` and ``solutions/``) or pass
``--course PATH``.  Exit status (:class:`grading.options.ExitCode`): 0 when the command did its job
(``autograde`` also when some submissions are broken: they are reported), 1 when its own check
failed, 2 for bad usage, 3 when the sandbox, a kernel or the gradebook cannot be used, 130 when
interrupted (finished work is kept; the same command resumes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from grading.options import DEFAULT, GIB, ExitCode


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _workers(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0: grade in this process)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=None,
                        help="the course folder (default: the working directory or the nearest parent with nbgrader_config.py)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader")
    sub.add_parser("execute", help="execute every solution notebook headlessly and report")
    sub.add_parser("demo", help="the main job: release, run the solutions, grade a synthetic class")

    grade = sub.add_parser(
        "autograde", help="grade a class of submissions (nbgrader layout)",
        description="Grade SUBMITTED/<student_id>/<assignment_id>/<notebook>.ipynb (or .py) and write "
                    "OUT/grades.csv, OUT/feedback/<student>/<assignment>/<notebook>.html, OUT/report; "
                    "results also go into the gradebook (default: the course gradebook, gradebook.db in the course folder).",
    )
    grade.add_argument("submitted", type=Path, help="folder in nbgrader's submitted layout")
    grade.add_argument("--out", type=Path, required=True, help="output folder")
    grade.add_argument("--workers", type=_workers, default=None,
                       help=f"parallel grading processes (default: the number of cores, here {os.cpu_count()}; 0: in-process)")
    grade.add_argument("--db", default=None,
                       help="gradebook file (or SQLAlchemy URL) to write into; default: the course gradebook "
                            "from the course's nbgrader_config.py")
    grade.add_argument("--cell-timeout", type=_positive, default=DEFAULT.cell_timeout,
                       help=f"seconds per cell (default {DEFAULT.cell_timeout:g})")
    grade.add_argument("--notebook-timeout", type=_positive, default=DEFAULT.notebook_timeout,
                       help=f"seconds per notebook, reading the file included (default {DEFAULT.notebook_timeout:g})")
    grade.add_argument("--assignment", action="append", help="grade only this assignment (repeatable)")
    grade.add_argument("--student", action="append", help="grade only this student (repeatable)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    grade.add_argument("--scheduler", metavar="ADDRESS",
                       help="send the submissions to a Dask cluster (e.g. tcp://host:8786) instead of local workers")
    grade.add_argument("--fresh", action="store_true",
                       help="regrade everything (by default a rerun reuses the submissions an earlier run finished)")
    grade.add_argument("--memory", type=_positive, default=DEFAULT.limits.memory_bytes / GIB,
                       help=f"memory limit per submission in GiB (default {DEFAULT.limits.memory_bytes / GIB:g})")
    grade.add_argument("--allow-other-course", action="store_true",
                       help="write into a --db gradebook that belongs to another course (refused by default)")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run students' code unconfined, as your own user, in plain Jupyter kernels "
                            "(only where bubblewrap is unavailable; students' code can then read everything you can)")

    collect = sub.add_parser(
        "collect", help="turn an LMS download (flat folder or .zip) into the submitted layout",
        description="Copy each .ipynb/.py of DOWNLOAD to SUBMITTED/<student>/<assignment>/<notebook>.<ext>; "
                    "see grading/intake/collect.py for the naming rules.",
    )
    collect.add_argument("download", type=Path, help="folder (or .zip) downloaded from the LMS")
    collect.add_argument("--into", type=Path, required=True, help="the submitted folder to fill")
    collect.add_argument("--pattern", help="regex with a named group `student`, searched in each file's relative path")
    collect.add_argument("--assignment", help="only match notebooks of this assignment")
    collect.add_argument("--dry-run", action="store_true", help="list what would be copied")

    bench = sub.add_parser(
        "bench", help="benchmark: grade a synthetic class with plain nbgrader and with this pipeline",
        description="Build a synthetic class (STUDENTS x every graded notebook), grade it with plain "
                    "`nbgrader autograde` and with this pipeline at default settings, and print both rates, "
                    "the ratio and where the time goes; the last line reads `speedup vs nbgrader: <ratio>x`.",
    )
    from grading.tools.bench import add_arguments as bench_arguments

    bench_arguments(bench)

    export = sub.add_parser("export", help="write the final grades table from the gradebook (manual grades included)",
                            description="csv (default): OUT with grades.csv's columns and OUT_totals.csv with per-student "
                                        "totals; canvas / moodle: a file that LMS's grade import accepts.")
    export.add_argument("--out", type=Path, required=True, help="CSV file to write")
    export.add_argument("--db", default=None, help="gradebook (default: the course gradebook, as autograde)")
    export.add_argument("--format", choices=("csv", "canvas", "moodle"), default="csv",
                        help="csv: the grades table and totals; canvas: Canvas Gradebook import; "
                             "moodle: Moodle's offline grading worksheet (one per assignment)")
    export.add_argument("--allow-other-course", action="store_true", help="read a gradebook of another course")

    fb = sub.add_parser("feedback", help="rewrite OUT/feedback/ with the written answers' scores and comments",
                        description="After grading written answers in Formgrader: rewrite every page of OUT/feedback/ "
                                    "from OUT/results/ and the gradebook's human scores and comments (never hidden tests).")
    fb.add_argument("--out", type=Path, required=True, help="the --out folder of autograde")
    fb.add_argument("--db", default=None, help="gradebook (default: the course gradebook, as autograde)")
    fb.add_argument("--allow-other-course", action="store_true", help="read a gradebook of another course")

    dash = sub.add_parser("dashboard", help="rewrite OUT/dashboard.html from the stored results of autograde")
    dash.add_argument("--out", type=Path, required=True, help="the --out folder of autograde")
    dash.add_argument("--db", default=None, help="also show the human scores of this gradebook (e.g. after Formgrader)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from grading import course

    try:
        course.use(args.course)
        course.root()
    except course.NoCourse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE

    if args.command == "release":
        from grading.authoring.release import main as run

        return run()
    if args.command == "execute":
        from grading.authoring.execute import execute_solutions

        return execute_solutions()
    if args.command == "demo":
        from grading.tools.demo import main as run

        return run()
    if args.command == "autograde":
        return _autograde(parser, args)
    if args.command == "collect":
        from grading.intake.collect import collect

        if not args.download.exists():
            parser.error(f"{args.download} does not exist")
        try:
            collect(args.download, args.into, args.pattern, args.assignment, args.dry_run)
        except (ValueError, __import__("re").error) as exc:  # CollectError is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        return ExitCode.OK
    if args.command == "bench":
        from grading import workers
        from grading.tools.bench import bench

        workers.allow_fork()  # ours is graded in this process, as `autograde` would: no other thread runs here
        return bench(args.students, args.workers, args.out)
    if args.command == "export":
        from grading.reporting.gradebook import export, provisional, totals_path

        try:
            n = export(args.db, args.out, args.format, args.allow_other_course)
        except (FileNotFoundError, ValueError) as exc:  # NotAGradebook is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        written = [args.out] if args.out.exists() else sorted(args.out.parent.glob(f"{args.out.stem}_*{args.out.suffix}"))
        print(f"wrote {n} grade(s) to {', '.join(str(p) for p in written)}"
              + (f" ({args.format} format)" if args.format != "csv" else f" and per-student totals to {totals_path(args.out)}"))
        for line in provisional(args.db):
            print(f"warning: {line}")
        if args.format == "moodle":
            print("note: Moodle reads Grade in points out of the assignment's Maximum grade on the Moodle side: set it to the "
                  "notebook's points (the Maximum Grade column) before uploading, or grades above it are skipped")
        return ExitCode.OK
    if args.command == "feedback":
        from grading.reporting.feedback import regenerate

        try:
            regenerate(args.out, args.db, args.allow_other_course)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        return ExitCode.OK
    if args.command == "dashboard":
        from grading.reporting.dashboard import rebuild

        try:
            path = rebuild(args.out, args.db)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        print(f"wrote {path}")
        return ExitCode.OK
    return ExitCode.USAGE  # pragma: no cover


def _autograde(parser: argparse.ArgumentParser, args) -> int:
    if not args.submitted.is_dir():
        parser.error(f"{args.submitted} is not a folder")
    from grading import workers
    from grading.execution.sandbox import SandboxUnavailable, check_available
    from grading.options import GradeOptions, Limits
    from grading.pipeline import Interrupted, UsageError, autograde_class
    from grading.reporting.gradebook import GradebookConflict

    workers.allow_fork()  # this process runs no other thread: its workers may be forked from it

    if args.no_sandbox:
        print("warning: --no-sandbox: students' code runs as your own user and can read solutions/, "
              "the gradebook and other submissions", file=sys.stderr)
    else:
        try:
            check_available()
        except SandboxUnavailable as exc:
            print(f"error: refusing to run students' code without a sandbox: {exc}", file=sys.stderr)
            return ExitCode.INFRASTRUCTURE
    options = GradeOptions(
        cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout, sandbox=not args.no_sandbox,
        limits=Limits(memory_bytes=int(args.memory * GIB)),
    )
    try:
        summary = autograde_class(
            args.submitted, args.out, workers=args.workers, db=args.db, options=options,
            assignments=args.assignment, students=args.student, progress=not args.quiet, resume=not args.fresh,
            scheduler=args.scheduler, allow_other_course=args.allow_other_course,
        )
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except GradebookConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INFRASTRUCTURE
    except Interrupted as exc:
        text = str(exc).replace("run the same command again", "run the same command without --fresh") if args.fresh else str(exc)
        print(f"autograde: {text}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    print(f"autograde: {summary.line()}", file=sys.stderr)
    print(f"grades:   {args.out / 'grades.csv'}\nfeedback: {args.out / 'feedback'}/\nreport:   {args.out / 'report'}", file=sys.stderr)
    print(f"dashboard: {args.out / 'dashboard.html'}", file=sys.stderr)
    if summary.infrastructure:
        print(f"error: {len(summary.infrastructure)} submission(s) could not be graded, through no fault of the "
              f"students: {summary.infrastructure[0].error}. Fix this and run the same command again.", file=sys.stderr)
        return ExitCode.INFRASTRUCTURE
    return ExitCode.OK


def run() -> int:
    """The console script and ``python -m grading``: Ctrl-C ends with one line, never a traceback."""
    try:
        return int(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(run())
