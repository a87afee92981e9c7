"""Command line: ``python -m grading <command>`` (also installed as ``attention-grade``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader")
    sub.add_parser("execute", help="execute every solution notebook headlessly and report")
    sub.add_parser("demo", help="the main job: release, execute the solutions, report")
    args = parser.parse_args(argv)

    if args.command == "release":
        from grading.release import main as run
    elif args.command == "execute":
        from grading.demo import execute_solutions as run
    else:
        from grading.demo import main as run
    return run()


if __name__ == "__main__":
    sys.exit(main())
