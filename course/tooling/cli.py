"""The course's command line.

    course list                 every module, whether its exercise passes, and what is next
    course check NN [-v]        grade an exercise (--target solutions, or a folder)
    course watch [NN]           grade again each time a file of the exercise is saved
    course hint NN [TODO [K]]   hints, per TODO, from a nudge to the code
    course reset NN             put an exercise back as it was (keeps a backup)
    course old-forms            outdated forms met online, beside today's
    course probe MODULE:APP     the course's instruments pointed at any FastAPI app (--json, --allow-writes)
    course doctor [--full]      is this machine ready? one line per item: OK, or what to do
    course why "TEXT"           an error message from production: the module and section that reproduce it, and the fix
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from course.manifest import ROOT, Module, find_module, modules

CACHE = ROOT / ".course-cache" / "grades.json"
_SKIP = ("__pycache__", ".pytest_cache", ".ipynb_checkpoints")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(s in p.parts for s in _SKIP)
                  and p.suffix not in (".pyc", ".db", ".db-journal", ".db-wal", ".db-shm"))


def fingerprint(module: Module) -> str:
    """A hash of everything a grade depends on: the exercise's files and the module's checks."""
    h = hashlib.sha256()
    for folder in (module.exercise, module.checks, ROOT / "course" / "grading"):
        for path in _files(folder) if folder.is_dir() else []:
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _load_cache() -> dict:
    try:
        return json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    try:
        CACHE.parent.mkdir(exist_ok=True)
        CACHE.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only checkout still grades; it just does not remember


def _remember(module: Module, g) -> None:
    cache = _load_cache()
    cache[module.name] = {"fingerprint": fingerprint(module), **g.as_dict()}
    _save_cache(cache)


def _grade(module: Module, target: str | None = None):
    from course.grading.grader import grade

    g = grade(module, target)
    if target in (None, "exercises") and g.problem is None:
        _remember(module, g)
    return g


def cmd_list(args: argparse.Namespace) -> int:
    cache = _load_cache()
    graded = modules(graded=True)
    print(f"{'Module':<8}{'Exercise':<11}{'Minutes':<9}Title")
    results = {}
    for m in graded:
        known = cache.get(m.name)
        if known and known.get("fingerprint") == fingerprint(m):
            passed, note = known["passed"], ""
        else:
            g = _grade(m)
            passed, note = g.passed, f"   (graded now, {g.seconds:.1f} s)"
            known = g.as_dict()
        results[m.number] = passed
        status = "done" if passed else f"{known.get('met', 0)}/{known.get('total', 0)} met"
        minutes = m.lesson_minutes + m.exercise_minutes
        print(f"  {m.number:<6}{status:<11}{minutes:<9}{m.title}{note}", flush=True)
    done = sum(results.values())
    bar = "#" * done + "." * (len(graded) - done)
    print(f"\nProgress: [{bar}] {done} of {len(graded)} modules passed")
    nxt = next((m for m in graded if not results[m.number]), None)
    if nxt:
        print(f"Next: module {nxt.number}, {nxt.title}\n  read  notebooks/{nxt.notebook.name}\n"
              f"  solve exercises/{nxt.name}/ (its README.md is the task)\n  check course check {nxt.number}")
    else:
        print("Every exercise passes. Well done.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from course.grading.grader import format_grade

    m = find_module(args.module)
    g = _grade(m, args.target)
    print(format_grade(g, verbose=args.verbose))
    if args.verbose and g.output:
        print("\n----- pytest output\n" + g.output)
    return 0 if g.passed else 1


def cmd_watch(args: argparse.Namespace) -> int:
    from course.grading.grader import format_grade

    if args.module:
        m = find_module(args.module)
    else:
        cache = _load_cache()
        m = next((m for m in modules(graded=True) if not cache.get(m.name, {}).get("passed")), modules(graded=True)[-1])
    rel = m.exercise.relative_to(ROOT)
    print(f"Watching {rel}/ : save a file to grade it again. Ctrl-C to stop.", flush=True)

    def state() -> dict[str, float]:
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in _files(m.exercise)}

    seen, runs = None, 0
    try:
        while True:
            now = state()
            if now != seen:
                seen = now
                print(f"\n===== {dt.datetime.now():%H:%M:%S}  course check {m.number}", flush=True)
                g = _grade(m)
                print(format_grade(g), flush=True)
                runs += 1
                if g.passed:
                    print(f"\nModule {m.number} passes. `course list` shows what is next.", flush=True)
                if args.exit_after and runs >= args.exit_after:
                    return 0 if g.passed else 1
                # `seen` stays the state from before this grading: a file saved while it ran is graded next.
            time.sleep(args.interval)
    except KeyboardInterrupt:
        print("\nStopped watching.")
        return 0


def cmd_hint(args: argparse.Namespace) -> int:
    from course.grading.hints import LEVELS, read_hints

    m = find_module(args.module)
    todos = read_hints(m.hints_file) if m.hints_file.exists() else []
    if not todos:
        print(f"No hints for module {m.number} yet.")
        return 0
    if args.todo is None:
        print(f"Hints for module {m.number} ({m.title}), one set per TODO in exercises/{m.name}/:\n")
        for t in todos:
            print(f"  course hint {m.number} {t.todo}    TODO {t.todo}: {t.title}")
        print("\nEach starts with a nudge; add 2 for the notebook section that shows it, 3 for the code.")
        print("A failed check names the TODO it is about.")
        return 0
    todo = next((t for t in todos if t.todo == args.todo), None)
    if todo is None:
        print(f"Module {m.number} has no TODO {args.todo}; its TODOs are {', '.join(str(t.todo) for t in todos)}.")
        return 1
    level = max(1, min(args.level, len(LEVELS)))
    print(f"TODO {todo.todo}: {todo.title}  ({LEVELS[level - 1].lower()}, hint {level} of {len(LEVELS)})\n")
    print(todo.levels[level - 1])
    if level < len(LEVELS):
        print(f"\nStill stuck? course hint {m.number} {todo.todo} {level + 1}  ({LEVELS[level].lower()})")
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


def cmd_old_forms(args: argparse.Namespace) -> int:
    from course import oldforms

    return oldforms.main([])


def cmd_probe(args: argparse.Namespace) -> int:
    from course import probing

    return probing.main(args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from course.tooling import doctor

    return doctor.main(full=args.full)


def cmd_why(args: argparse.Namespace) -> int:
    from course.pages import errors

    return errors.why_main(" ".join(args.text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description="FastAPI in Production: grade and explore exercises.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every module, whether its exercise passes, and what is next")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("check", help="grade an exercise")
    p.add_argument("module", help="module number, e.g. 01")
    p.add_argument("--target", default=None,
                   help="what to grade: exercises (default), solutions, or a folder laid out the same way")
    p.add_argument("-v", "--verbose", action="store_true", help="show full tracebacks")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("watch", help="grade again each time you save a file of the exercise")
    p.add_argument("module", nargs="?", help="module number (default: the first one not passed yet)")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--exit-after", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser("hint", help="hints for an exercise, per TODO")
    p.add_argument("module")
    p.add_argument("todo", nargs="?", type=int, help="which TODO")
    p.add_argument("level", nargs="?", type=int, default=1, help="1 a nudge, 2 the notebook section, 3 the code")
    p.set_defaults(func=cmd_hint)
    p = sub.add_parser("reset", help="put an exercise back as it was (keeps a backup)")
    p.add_argument("module")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser("old-forms", help="outdated forms you will meet online, beside today's")
    p.set_defaults(func=cmd_old_forms)
    p = sub.add_parser("probe", help="the course's instruments pointed at any FastAPI app: findings, each with its "
                       "evidence and the notebook section that teaches it")
    from course.probing import add_arguments  # argparse only: imports nothing heavy

    add_arguments(p)
    p.set_defaults(func=cmd_probe)
    p = sub.add_parser("doctor", help="is this machine ready for the course? one line per item: OK, or what to do")
    p.add_argument("--full", action="store_true", help="also start JupyterLab for real (5 to 10 s)")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("why", help="an error message: the module and section that reproduce it, and the fix")
    p.add_argument("text", nargs="+", help='the message, or part of it: course why "QueuePool limit of size 5"')
    p.set_defaults(func=cmd_why)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LookupError as exc:
        print(f"course: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
