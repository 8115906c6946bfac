"""Harness for notebook 04 (async testing): what the lesson cells call but need not show.

    from course import asynctesting
    PREFIX = asynctesting.run_prefix("course04")     # names every folder and database this run creates
    asynctesting.leftovers(PREFIX)                    # folders with that prefix still on disk: []
    run = asynctesting.pytest_main_in_kernel(folder)  # pytest.main() in this process, its imports undone

Its throwaway PostgreSQL databases are course.databases' (``pg_sandbox(PREFIX)``, ``pg_leftovers(PREFIX)``).

Learners on one JupyterHub share /tmp, /dev/shm and the PostgreSQL server, so a clean-up check
must look only at what this run created: a prefix made unique per notebook run does that.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.pytest_runner import SCRATCH

__all__ = ["run_prefix", "leftovers", "InKernelRun", "pytest_main_in_kernel"]


def run_prefix(name: str = "course") -> str:
    """A prefix unique to this notebook run, e.g. ``course04-3f9a1c2e-``: give it to every scratch
    folder (``run_pytest(prefix=...)``, ``TemporaryDirectory(prefix=...)``) and database."""
    return f"{name}-{uuid.uuid4().hex[:8]}-"


def leftovers(prefix: str) -> list[str]:
    """Folders whose name starts with ``prefix`` in the scratch folder and the temp folder."""
    found: set[str] = set()
    for folder in {SCRATCH, tempfile.gettempdir()}:
        found.update(str(p) for p in Path(folder).glob(f"{prefix}*"))
    return sorted(found)


@dataclass
class InKernelRun:
    """What ``pytest.main()`` did inside this process."""

    exit_code: int
    outcomes: dict[str, str] = field(default_factory=dict)  # test name -> passed / failed / error
    messages: dict[str, str] = field(default_factory=dict)  # test name -> the exception line
    warnings: list[str] = field(default_factory=list)  # first line of each warning pytest recorded


class _Collector:
    """A pytest plugin object: records each test's outcome, message and the warnings."""

    def __init__(self, run: InKernelRun) -> None:
        self.run = run

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid.split("::")[-1]
        if report.failed and self.run.outcomes.get(name) not in ("failed", "error"):
            self.run.outcomes[name] = "failed" if report.when == "call" else "error"
            crash = getattr(report.longrepr, "reprcrash", None)
            self.run.messages[name] = crash.message if crash is not None else str(report.longrepr)
        elif report.when == "call" and report.passed:
            self.run.outcomes.setdefault(name, "passed")

    def pytest_warning_recorded(self, warning_message: Any, when: str, nodeid: str, location: Any) -> None:
        lines = str(warning_message.message).strip().splitlines()
        self.run.warnings.append(f"{warning_message.category.__name__}: {lines[0] if lines else ''}")


def pytest_main_in_kernel(folder: str | os.PathLike, *args: str) -> InKernelRun:
    """Run ``pytest.main()`` on ``folder`` inside this process (a notebook kernel), and undo what it
    leaves behind: ``sys.path`` is restored and the modules imported from ``folder`` are dropped.

    pytest's plugins that reach outside the run are off (cache, faulthandler, logging, output
    capture), and ``--import-mode=importlib`` keeps pytest from editing ``sys.path`` at all. The
    libraries pytest imports stay imported, as any import does.
    """
    import pytest

    folder = str(Path(folder).resolve())
    run = InKernelRun(exit_code=-1)
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    try:
        run.exit_code = int(pytest.main(
            [folder, "-q", "--tb=line", "--color=no", "--import-mode=importlib", "--capture=no",
             "-p", "no:cacheprovider", "-p", "no:faulthandler", "-p", "no:logging", *args],
            plugins=[_Collector(run)]))
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            if (getattr(sys.modules[name], "__file__", None) or "").startswith(folder):
                del sys.modules[name]
    return run
