"""The course's command line: ``course list | check NN | hint NN [K] | reset NN``."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys

from course.checking import ROOT
from course.grader import find_module, format_grade, grade, hints, modules


def cmd_list(args: argparse.Namespace) -> int:
    print("Module  Exercise   Title")
    for m in modules():
        g = grade(m)
        status = "done" if g.passed else "to do"
        print(f"  {m.number}    {status:<9}  {m.title}   ({g.seconds:.1f} s)", flush=True)
    print("\nGrade one with: course check NN   (add -v for tracebacks)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    m = find_module(args.module)
    g = grade(m, args.target)
    print(format_grade(g, verbose=args.verbose))
    if args.verbose and g.output:
        print("\n----- pytest output\n" + g.output)
    return 0 if g.passed else 1


def cmd_hint(args: argparse.Namespace) -> int:
    m = find_module(args.module)
    all_hints = hints(m)
    if not all_hints:
        print(f"No hints for module {m.number} yet.")
        return 0
    k = max(1, min(args.number, len(all_hints)))
    print(all_hints[k - 1])
    if k < len(all_hints):
        print(f"\n(hint {k} of {len(all_hints)}; next: course hint {m.number} {k + 1})")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    m = find_module(args.module)
    rel = m.exercise.relative_to(ROOT)
    if not args.yes:
        answer = input(f"Put {rel} back as it was? Your version is kept in .course-backups/. [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("Nothing changed.")
            return 1
    backup = ROOT / ".course-backups" / f"{m.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    shutil.copytree(m.exercise, backup)
    done = subprocess.run(["git", "-C", str(ROOT), "checkout", "HEAD", "--", str(rel)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"Could not restore from git: {done.stderr.strip()}")
        return 1
    print(f"{rel} restored. Your version: {backup.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description="FastAPI in Production: grade and explore exercises.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every module and whether its exercise passes")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("check", help="grade an exercise")
    p.add_argument("module", help="module number, e.g. 01")
    p.add_argument("--target", default=None,
                   help="what to grade: exercises (default), solutions, or a folder laid out the same way")
    p.add_argument("-v", "--verbose", action="store_true", help="show full tracebacks")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("hint", help="show a hint for a module's exercise")
    p.add_argument("module")
    p.add_argument("number", nargs="?", type=int, default=1, help="which hint (1 is the gentlest)")
    p.set_defaults(func=cmd_hint)
    p = sub.add_parser("reset", help="put an exercise back as it was (keeps a backup)")
    p.add_argument("module")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_reset)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
