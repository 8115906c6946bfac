"""Run a module's check suite against a folder and explain the result to a learner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.checking import ROOT

__all__ = ["Module", "modules", "find_module", "Grade", "grade", "format_grade", "check"]

SUITE_TIMEOUT = 120.0  # seconds for a whole check suite; each driver has its own, shorter timeout


@dataclass(frozen=True)
class Module:
    name: str  # "01_database_lifecycle"

    @property
    def number(self) -> str:
        return self.name[:2]

    @property
    def exercise(self) -> Path:
        return ROOT / "exercises" / self.name

    @property
    def solution(self) -> Path:
        return ROOT / "solutions" / self.name

    @property
    def checks(self) -> Path:
        return ROOT / "checks" / self.name

    @property
    def mistakes(self) -> Path:
        return ROOT / "checks" / "mistakes" / self.name

    @property
    def title(self) -> str:
        readme = self.exercise / "README.md"
        if readme.exists():
            for line in readme.read_text().splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
        return self.name[3:].replace("_", " ").capitalize()


def modules() -> list[Module]:
    """Every module that has an exercise and a check suite, in order."""
    found = []
    for path in sorted((ROOT / "exercises").glob("[0-9][0-9]_*")):
        if path.is_dir() and (ROOT / "checks" / path.name).is_dir():
            found.append(Module(path.name))
    return found


def find_module(key: str) -> Module:
    """``"01"``, ``"1"`` or ``"01_database_lifecycle"`` -> the module."""
    key = key.strip().rstrip("/").split("/")[-1]
    for m in modules():
        if key == m.name or (key.isdigit() and int(key) == int(m.number)):
            return m
    names = ", ".join(m.name for m in modules())
    raise SystemExit(f"No module {key!r}. Modules: {names}")


@dataclass
class Grade:
    module: Module
    target: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    problem: str | None = None  # the suite itself could not run
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.problem is None and bool(self.records) and all(r["outcome"] != "failed" for r in self.records)

    @property
    def failed_names(self) -> list[str]:
        return [r["test"] for r in self.records if r["outcome"] == "failed"]


def resolve_target(module: Module, target: str | os.PathLike | None) -> Path:
    if target is None or str(target) == "exercises":
        return module.exercise
    if str(target) == "solutions":
        return module.solution
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    return path / module.name if (path / module.name).is_dir() else path


def grade(module: Module, target: str | os.PathLike | None = None, *, timeout: float = SUITE_TIMEOUT) -> Grade:
    """Run ``checks/<module>`` against ``target`` in a pytest subprocess."""
    folder = resolve_target(module, target)
    result = Grade(module=module, target=folder)
    if not folder.is_dir():
        result.problem = f"{folder} is not a folder"
        return result
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            # One argument, "--target=<folder>": pytest's first pass over the command line does not know
            # --target yet, would collect a separate value as a path, and import the learner's conftest.py.
            sys.executable, "-m", "pytest", str(module.checks), f"--target={folder}",
            "-p", "course.report", "--course-report", str(report),
            "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
            "-q", "--no-header", "--color=no", "-p", "no:randomly",
        ]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("FORCE_COLOR", None)
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
                                  stdin=subprocess.DEVNULL)
            result.output = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            result.problem = f"the checks did not finish within {timeout:.0f} s"
        result.seconds = time.perf_counter() - start
        if report.exists():
            result.records = json.loads(report.read_text())
        elif result.problem is None:
            result.problem = "the checks could not run:\n" + result.output[-2000:]
    return result


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        try:
            return str(path.relative_to(ROOT))
        except ValueError:
            return str(path)


def format_grade(g: Grade, *, verbose: bool = False) -> str:
    lines = [f"Module {g.module.number}: {g.module.title}  ({_rel(g.target)})", ""]
    marks = {"passed": "PASS", "failed": "FAIL", "skipped": "skip"}
    for r in g.records:
        lines.append(f"  [{marks.get(r['outcome'], r['outcome'])}] {r['name']}")
    if g.problem:
        lines += ["", f"Could not grade: {g.problem}"]
        return "\n".join(lines)
    failed = [r for r in g.records if r["outcome"] == "failed"]
    lines.append("")
    if not failed:
        lines.append(f"All {len(g.records)} expectations met in {g.seconds:.1f} s. Well done.")
        return "\n".join(lines)
    first = failed[0]
    lines.append(f"{len(failed)} of {len(g.records)} expectations not met ({g.seconds:.1f} s). First: {first['name']}")
    if first["unmet"]:
        u = first["unmet"]
        if u.get("called"):
            lines.append(f"  Called:   {u['called']}")
        lines.append(f"  Expected: {u['expected']}")
        lines.append("  Got:      " + str(u["got"]).replace("\n", "\n            "))
        if u.get("hint"):
            lines.append(f"  Hint:     {u['hint']}")
    else:
        lines.append(f"  The check itself raised {first['error'] or 'an error'}.")
        lines.append("  Run with -v to see the traceback.")
    lines.append("")
    lines.append(f"More help: course hint {g.module.number}.  Full tracebacks: course check {g.module.number} -v")
    if verbose:
        for r in failed:
            lines += ["", f"----- {r['name']} ({r['nodeid']})", r["traceback"]]
    return "\n".join(lines)


def check(module: str, target: str | None = None, verbose: bool = False) -> bool:
    """Grade from a notebook cell: ``course.check("01")``. Prints the report, returns pass/fail."""
    g = grade(find_module(module), target)
    print(format_grade(g, verbose=verbose))
    return g.passed


def hints(module: Module) -> list[str]:
    """The module's hints, from ``checks/<module>/HINTS.md`` (one per ``## `` section)."""
    path = module.checks / "HINTS.md"
    if not path.exists():
        return []
    parts = re.split(r"^## ", path.read_text(), flags=re.M)[1:]
    return ["## " + p.strip() for p in parts]
