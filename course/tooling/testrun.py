"""``make test``: every check CI runs, with the times printed so drift is visible.

Four phases, so the suite fits its budget on two cores while nothing in it can fail for being
slow (time budgets are ``make bench``'s, measured alone and judged as ratios):

1. everything that measures no time, in parallel (pytest-xdist, 2 workers): the helper tests,
   the environment, JupyterLab, the module files, and every grader proof (untouched exercise,
   solution, each known mistake; they record how long each grading took);
2. everything marked ``paired``, two at a time: notebooks whose assertions
   are counts, texts and same-run ratios with margins wide enough for one neighbour;
3. everything marked ``serial``, one at a time: the notebooks that assert tenths of a second
   (tests/test_notebooks.py's ALONE says which, and on what evidence), and course probe on the
   course's apps, and the browser run (tests/test_browser.py says why); not ``probe_full`` (the
   probe on every known mistake: ``make test-probe``);
4. everything marked ``executed``: what reads the notebooks phases 2 and 3 executed and saved
   (build/executed, course.tooling.executed): the site, the error index, the impact table, the
   instructor guide's answers.

Each phase runs through course.pytest_runner; the tests record their timings in a shared file
(``COURSE_TIMINGS``) and the table is printed at the end, with each phase's time.
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

# worksteal: a worker that runs out of tests takes queued ones from the other, so a phase does not
# end with one core idle behind a queue (the paired phase has few, long tests).
PHASES = [
    ("parallel, measures no time", ["-n", "2", "--dist", "worksteal", "-m", "not serial and not paired and not executed"]),
    ("two at a time, counts and same-run ratios", ["-n", "2", "--dist", "worksteal", "-m", "paired"]),
    # probe_full (course probe on every known mistake) is make test-probe's, run by CI after make test
    ("one at a time, tight timing", ["-m", "serial and not probe_full"]),
    # what the notebooks printed in phases 2 and 3 (saved to build/executed): the site, the pages;
    # two tests, about 15 s: no workers to start
    ("from the executed notebooks", ["-m", "executed"]),
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
    print("\n===== course timings (shown, never asserted: `make bench` judges the budgets)", flush=True)
    for row in sorted(rows, key=lambda r: r["label"]):
        print(f"{row['seconds']:7.1f} s  {row['label']}")
    print("\n" + "\n".join(summary))
    failed = any(codes)
    print(f"\nmake test: {'FAILED' if failed else 'passed'} in {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
