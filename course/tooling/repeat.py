"""``make test-repeat``: every notebook and every grader proof three times in a row, then per test
how many of the runs passed. A test that passes 2 of 3 times is flaky: a timing margin too thin
for a busy machine, or something one run leaves behind for the next.

    python -m course.tooling.repeat                        # everything, three times
    python -m course.tooling.repeat --times 5 -k 01-held   # a subset (any pytest selection)

* Notebooks (``tests/test_notebooks.py::test_notebook_runs``) run one at a time (``make test``
  runs most of them two at a time; alone, a failure is the notebook's own), each notebook its
  three times back to back (the rule "Restart and run all twice in a row works"), each time in a
  pytest process of its own. (``--keep-duplicates`` is no help
  here: a node id given twice is collected twice but runs once.)
* Grader proofs (``tests/test_grader_proof.py``) run as ``make test`` runs them, two in parallel
  (pytest-xdist), in three rounds: one pytest run per round.

Each run prints one line as it ends; the table at the end has each test's times and, for a run
that did not pass, the first line of its error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

from course.manifest import ROOT
from course.pytest_runner import SuiteRun, TestResult, run_pytest
from course.tooling.latest import notebook_failure

__all__ = ["NOTEBOOKS", "PROOFS", "collect", "main"]

NOTEBOOKS = "tests/test_notebooks.py::test_notebook_runs"
PROOFS = "tests/test_grader_proof.py"
COMMON = ("-p", "no:randomly", "-q", "-rN")


def collect(*selection: str) -> list[str]:
    """The node ids pytest selects from the notebooks and the grader proofs, in its order."""
    run = run_pytest("--collect-only", "-q", NOTEBOOKS, PROOFS, *selection, cwd=ROOT, timeout=300)
    ids = [line.strip() for line in run.output.splitlines() if line.startswith("tests/") and "::" in line]
    if run.returncode not in (0, 5):
        raise SystemExit(f"collecting the tests failed:\n{run.tail(30)}")
    return ids


def _short(nodeid: str) -> str:
    return nodeid.split("::")[-1]


def _run(args: list[str], timeout: float) -> SuiteRun:
    run = run_pytest(*args, *COMMON, cwd=ROOT, timeout=timeout)
    if run.timed_out:
        print(f"    stopped at the timeout ({timeout:.0f} s)", flush=True)
    elif not run.tests:
        print(f"    pytest ran no test:\n{run.tail(20)}", flush=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make test-repeat", description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=3, help="how many times each test runs (3)")
    opts, selection = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    times = max(1, opts.times)
    start = time.perf_counter()
    ids = collect(*selection)
    notebooks = [i for i in ids if i.startswith(NOTEBOOKS)]
    proofs = [i for i in ids if i.startswith(PROOFS)]
    if not ids:
        print(f"no notebook or grader proof matches {' '.join(selection)!r}")
        return 1
    print(f"{len(notebooks)} notebooks and {len(proofs)} grader proofs, {times} times each", flush=True)
    results: dict[str, list[TestResult | None]] = defaultdict(list)
    if notebooks:
        print(f"\n===== notebooks, one at a time, each {times} times in a row", flush=True)
    for i in notebooks:
        for n in range(times):
            run = _run([i], timeout=360)
            t = run.tests[0] if run.tests else None
            results[i].append(t)
            state = f"{t.outcome} in {t.duration:.1f} s" if t is not None else "did not run"
            print(f"{_short(i)} run {n + 1}/{times}: {state}", flush=True)
    for n in range(times):
        if not proofs:
            break
        print(f"\n===== grader proofs, round {n + 1} of {times} (2 in parallel)", flush=True)
        run = _run([*proofs, "-n", "2"], timeout=len(proofs) * 200 + 120)
        seen = {t.nodeid: t for t in run.tests}
        for i in proofs:
            results[i].append(seen.get(i))
        bad = [_short(i) for i in proofs if seen.get(i) is None or seen[i].outcome != "passed"]
        print(f"{len(proofs) - len(bad)} of {len(proofs)} passed in {run.seconds:.0f} s"
              + (f"; not passed: {', '.join(bad)}" if bad else ""), flush=True)

    print(f"\n===== make test-repeat: how many of {times} runs passed, per test")
    width = max(len(i.split("::")[-1]) for i in ids)
    flaky = 0
    for i in ids:
        runs = results[i]
        passed = sum(1 for t in runs if t is not None and t.outcome == "passed")
        flaky += passed != times
        cells = "  ".join(f"{t.duration:5.1f} s" if t is not None and t.outcome == "passed"
                          else f"{(t.outcome if t is not None else 'not run').upper():>7}" for t in runs)
        print(f"{passed}/{times}  {i.split('::')[-1]:<{width}}  {cells}")
        for n, t in enumerate(runs, 1):
            if t is not None and t.outcome != "passed":
                # A notebook's failure as make test-latest prints it: the cell, its first line, the error.
                why = notebook_failure(t) if t.file == "test_notebooks" else t.first_line
                print(f"        run {n}: " + " / ".join(line.strip() for line in why.splitlines())[:300])
    total = time.perf_counter() - start
    verdict = "every run passed" if not flaky else f"{flaky} of {len(ids)} tests did not pass every run"
    print(f"\nmake test-repeat: {verdict} ({total:.0f} s)")
    return 0 if not flaky else 1


if __name__ == "__main__":
    sys.exit(main())
