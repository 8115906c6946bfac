"""Run a module's check suite against a folder and explain the result to a learner.

    from course.grading.grader import grade, format_grade
    g = grade(find_module("01"), "solutions")
    print(format_grade(g))
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from course.grading.checking import describe
from course.manifest import ROOT, Module, find_module
from course.pytest_runner import TestResult, run_pytest

__all__ = ["Grade", "grade", "format_grade", "check", "resolve_target", "SUITE_TIMEOUT"]

SUITE_TIMEOUT = 120.0  # seconds for a whole check suite; each driver has its own, shorter timeout


def resolve_target(module: Module, target: str | os.PathLike | None) -> Path:
    """The folder to grade (the one resolver): ``None``/``"exercises"`` -> the exercise,
    ``"solutions"`` -> the solution, a folder holding ``<module name>/`` -> that subfolder,
    any other folder -> itself. Relative paths are taken from the current directory, else the
    course root."""
    if target is None or str(target) in ("exercises", "exercise"):
        return module.exercise
    if str(target) in ("solutions", "solution"):
        return module.solution
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path if (Path.cwd() / path).exists() else ROOT / path
    path = path.resolve()
    return path / module.name if (path / module.name).is_dir() else path


@dataclass
class Grade:
    module: Module
    target: Path
    records: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0
    problem: str | None = None  # the suite itself could not run
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.problem is None and bool(self.records) and all(r.outcome == "passed" for r in self.records)

    @property
    def failed(self) -> list[TestResult]:
        return [r for r in self.records if r.outcome in ("failed", "error")]

    @property
    def failed_names(self) -> list[str]:
        return [r.name for r in self.failed]

    def as_dict(self) -> dict:
        return {"module": self.module.number, "passed": self.passed, "seconds": round(self.seconds, 2),
                "met": sum(r.outcome == "passed" for r in self.records), "total": len(self.records),
                "problem": self.problem, "first_failure": self.failed[0].doc if self.failed else None}


def grade(module: Module, target: str | os.PathLike | None = None, *, timeout: float = SUITE_TIMEOUT) -> Grade:
    """Run ``checks/<module>`` against ``target`` in a pytest subprocess."""
    folder = resolve_target(module, target)
    result = Grade(module=module, target=folder)
    if not folder.is_dir():
        result.problem = f"{folder} is not a folder"
        return result
    start = time.perf_counter()
    run = run_pytest(
        # One argument, "--target=<folder>": pytest's first pass over the command line does not know
        # --target yet, would collect a separate value as a path, and import the learner's conftest.py.
        str(module.check_suite), f"--target={folder}", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
        "-q", "--no-header", "-p", "no:randomly", cwd=ROOT, timeout=timeout)
    result.seconds = time.perf_counter() - start
    result.output = run.output
    result.records = run.tests
    if run.timed_out:
        result.problem = f"the checks did not finish within {timeout:.0f} s"
    elif not run.tests:
        result.problem = "the checks could not run:\n" + run.output[-2000:]
    return result


def _rel(path: Path) -> str:
    for base in (Path.cwd(), ROOT):
        try:
            return str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def format_grade(g: Grade, *, verbose: bool = False) -> str:
    """The learner's report: one line per expectation, then the first unmet one in full."""
    number = g.module.number
    lines = [f"Module {number}: {g.module.title}  ({_rel(g.target)})", ""]
    marks = {"passed": "PASS", "failed": "FAIL", "error": "FAIL", "skipped": "skip"}
    for r in g.records:
        lines.append(f"  [{marks.get(r.outcome, r.outcome)}] {r.doc or r.name}")
    if g.problem:
        lines += ["", f"Could not grade: {g.problem}"]
        return "\n".join(lines)
    failed = g.failed
    lines.append("")
    if not failed:
        lines.append(f"All {len(g.records)} expectations met in {g.seconds:.1f} s. Well done.")
        return "\n".join(lines)
    first = failed[0]
    lines.append(f"{len(failed)} of {len(g.records)} expectations not met ({g.seconds:.1f} s). "
                 f"First: {first.doc or first.name}")
    if first.unmet:
        unmet = dict(first.unmet)
        if unmet.get("todo"):
            unmet["more"] = f"course hint {number} {unmet['todo']}"
        lines.append(describe(unmet, indent="  "))
    else:
        lines.append(f"  The check itself stopped with {first.first_line or 'an error'}.")
        lines.append(f"  Run `course check {number} -v` to see the traceback.")
    lines.append("")
    target = "" if g.target == g.module.exercise else f" --target {_rel(g.target)}"
    lines.append(f"More help: course hint {number}.  Full tracebacks: course check {number}{target} -v")
    if verbose:
        for r in failed:
            lines += ["", f"----- {r.doc or r.name} ({r.nodeid})", r.longrepr]
    return "\n".join(lines)


def check(module: str, target: str | None = None, verbose: bool = False) -> bool:
    """Grade from a notebook cell: ``course.check("01")``. Prints the report, returns pass/fail."""
    g = grade(find_module(module), target)
    print(format_grade(g, verbose=verbose))
    return g.passed
