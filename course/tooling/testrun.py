"""``make test``: every check CI runs, with the times printed so drift is visible.

Two phases, so the suite fits its budget on two cores without making timing claims flaky:

1. everything that measures no time, in parallel (pytest-xdist, 2 workers): the helper tests,
   the environment, JupyterLab, the module files, and every grader proof (untouched exercise,
   solution, each known mistake);
2. everything marked ``serial`` (it measures time: the notebooks' ratios, the grading budgets),
   one at a time.

Each phase runs through course.pytest_runner; the tests record their timings in a shared file
(``COURSE_TIMINGS``) and the table is printed at the end.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from course.manifest import ROOT
from course.pytest_runner import run_pytest

PHASES = [
    ("parallel, measures no time", ["-n", "2", "-m", "not serial"]),
    ("serial, measures time", ["-m", "serial"]),
]


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    fd, timings = tempfile.mkstemp(prefix="course-timings-", suffix=".jsonl")
    os.close(fd)
    codes, summary = [], []
    try:
        for label, args in PHASES:
            cmd = ["course/tests", "tests", "-p", "no:randomly", "-rfE", "--durations=10", *args, *extra]
            print(f"\n===== make test, phase {len(codes) + 1}: {label}\n$ pytest {' '.join(cmd)}", flush=True)
            run = run_pytest(*cmd, cwd=ROOT, env={"COURSE_TIMINGS": timings}, timeout=1800, stream=True)
            # pytest's exit code 5: this phase selected no test (e.g. a -k that matches only one phase).
            code = 0 if run.returncode == 5 else (1 if run.timed_out else run.returncode)
            codes.append(code)
            summary.append(f"phase {len(codes)} ({label}): {run.counts['passed']} passed, "
                           f"{run.counts['failed'] + run.counts['error']} failed, {run.seconds:.0f} s")
        rows = [json.loads(line) for line in Path(timings).read_text().splitlines() if line.strip()]
    finally:
        Path(timings).unlink(missing_ok=True)
    print("\n===== course timings", flush=True)
    for row in sorted(rows, key=lambda r: r["label"]):
        print(f"{row['seconds']:7.1f} s  {row['label']}")
    print("\n" + "\n".join(summary))
    failed = any(codes)
    print(f"\nmake test: {'FAILED' if failed else 'passed'} in {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
