"""Tools for the check suites under ``checks/``: expectations with learner-readable messages,
and running the learner's code in a subprocess with a timeout.

A check is a pytest test whose docstring's first line names the expectation. It fails with
:class:`Unmet`, which carries what was called, what was expected, what happened and a hint;
the grader (``course check``) prints those four lines instead of a traceback.

The learner's code never runs inside the pytest process: a *driver* script imports it in a
subprocess, exercises it (starts its app, sends requests, counts connections) and prints one
JSON report. A hang, an infinite loop or an import error therefore becomes a clear message
within a timeout, never a frozen grader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["Unmet", "expect", "run_driver", "REPORT_MARKER", "emit_report", "module_dir", "ROOT"]

ROOT = Path(__file__).resolve().parents[1]
REPORT_MARKER = "COURSE-DRIVER-REPORT:"


class Unmet(AssertionError):
    """An expectation the learner's code does not meet."""

    def __init__(self, *, expected: str, got: str, called: str | None = None, hint: str | None = None) -> None:
        self.expected, self.got, self.called, self.hint = expected, got, called, hint
        super().__init__(self.describe())

    def describe(self) -> str:
        lines = []
        if self.called:
            lines.append(f"Called:   {self.called}")
        lines.append(f"Expected: {self.expected}")
        lines.append(f"Got:      {self.got}")
        if self.hint:
            lines.append(f"Hint:     {self.hint}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, str | None]:
        return {"called": self.called, "expected": self.expected, "got": self.got, "hint": self.hint}


def expect(condition: Any, *, expected: str, got: str, called: str | None = None, hint: str | None = None) -> None:
    """Raise :class:`Unmet` unless ``condition`` is true."""
    if not condition:
        raise Unmet(expected=expected, got=got, called=called, hint=hint)


def module_dir(target: str | os.PathLike, module: str) -> Path:
    """The folder to grade: ``target/module`` if it exists (``exercises``, ``solutions``),
    else ``target`` itself (a folder laid out like one module)."""
    base = Path(target)
    if not base.is_absolute():
        base = (Path.cwd() / base) if (Path.cwd() / base).exists() else ROOT / base
    return base / module if (base / module).is_dir() else base


def emit_report(report: dict[str, Any]) -> None:
    """Called by a driver: print its JSON report on one marked line of stdout."""
    print(REPORT_MARKER + json.dumps(report, default=str), flush=True)


def run_driver(driver: str | os.PathLike, *args: str, timeout: float = 30.0, env: dict[str, str] | None = None,
               cwd: str | os.PathLike | None = None, what: str = "your code") -> dict[str, Any]:
    """Run a driver script in a fresh interpreter and return its JSON report.

    Raises :class:`Unmet` when the driver does not finish within ``timeout`` seconds or
    crashes without a report (the last lines of its stderr say why).
    """
    cmd = [sys.executable, str(driver), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-600:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        raise Unmet(
            called=f"{what}, in a fresh Python process",
            expected=f"it finishes within {timeout:.0f} s",
            got=f"still running after {timeout:.0f} s; it was stopped" + (f". Last output:\n{tail}" if tail.strip() else ""),
            hint="look for a blocking call, an endless loop, or something awaited that never completes "
                 "(a lock, a connection from an exhausted pool).",
        ) from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(REPORT_MARKER):
            return json.loads(line[len(REPORT_MARKER):])
    err = proc.stderr.strip().splitlines()
    raise Unmet(
        called=f"{what}, in a fresh Python process",
        expected="it runs and reports back",
        got=f"it exited with code {proc.returncode} before reporting: " + (" / ".join(err[-3:]) if err else "(no error output)"),
        hint="run the file yourself (python app.py, or import it) and read the first error.",
    )
