"""What every probe imports: ``from probekit import emit, error, ...``.

Probes run as ``python -I`` scripts, so this module is found through the folder the runner puts
first on ``sys.path``, not as ``course.oldforms.probekit``: importing ``course`` first could
change what a probe sees (an import that already happened, a warning already shown). Only
:func:`run_pytest` imports the course, when it is called.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import warnings
from typing import Any


def emit(**outcome: Any) -> None:
    """Print the probe's one JSON line, the outcome the runner compares with ``expect``."""
    print(json.dumps(outcome, default=repr), flush=True)


def error(exc: BaseException) -> dict[str, Any]:
    """The outcome keys for an exception: its type, message and cause."""
    out: dict[str, Any] = {"raised": type(exc).__name__, "message": " ".join(str(exc).split())}
    if exc.__cause__ is not None:
        out["cause"] = type(exc.__cause__).__name__
    return out


def printed_by_default(source: str, **names: Any) -> list[warnings.WarningMessage]:
    """The warnings Python would print if ``source`` ran in an imported module (not ``__main__``),
    with the interpreter's default filters (``python -I`` ignores PYTHONWARNINGS)."""
    with warnings.catch_warnings(record=True) as seen:
        exec(compile(source, "app_module.py", "exec"), {"__name__": "app_module", **names})
    return seen


def run_pytest(files: dict[str, str], timeout: float = 12) -> Any:
    """Run a small suite, ``{file name: source}``, through the course's runner, in strict mode
    with a loop per test (the course's setting); return its ``SuiteRun``.

    Timing out raises, so the probe fails with a reason instead of comparing half a run."""
    # `python -I` ignores PYTHONPATH: where the course is not installed but run from a clone, find it
    # here (last, so an installed course comes first). pytest itself gets PYTHONPATH from the environment.
    sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from course.pytest_runner import FUNCTION_LOOPS, SCRATCH, ini_text
    from course.pytest_runner import run_pytest as course_run_pytest

    with tempfile.TemporaryDirectory(prefix="oldforms-pytest-", dir=SCRATCH) as folder:
        for name, source in {**files, "pytest.ini": ini_text(FUNCTION_LOOPS)}.items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(source)
        run = course_run_pytest("-q", cwd=folder, timeout=timeout)
    if run.timed_out:
        raise TimeoutError(f"pytest did not finish within {timeout} s:\n{run.tail()}")
    return run


def outcome_of(run: Any, test: str) -> list[str]:
    """``[outcome, message]`` of one test, the message on one line."""
    result = run[test]
    return [result.outcome, " ".join(result.message.split())]


def warnings_of(run: Any) -> int:
    """How many warnings pytest's summary line counts."""
    found = re.search(r"(\d+) warnings?", run.tail(1))
    return int(found.group(1)) if found else 0
