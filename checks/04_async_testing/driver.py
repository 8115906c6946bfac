"""Driver for the module 04 checks: run the learner's conftest.py against the course's tests.

    python driver.py <module folder>

The learner's conftest.py is copied next to the course's own app.py, padding.py, pytest.ini and
tests (the given ones from solutions/04_async_testing, the hidden ones from suite/) into a
scratch folder, and pytest runs there (course.pytest_runner) once, as ``pytest -n 2 --dist each``
with every test file given twice (--keep-duplicates): both workers collect both copies, and
plugins/course04_probe.py lets gw0 run the first copy in the usual order and gw1 the second in
reverse order, each in a session of its own, at the same time. The usual order:
suite/first_test.py (it asks only for `session`, so it is the first test of the session), the
given tests, then suite/hidden_tests.py.

That one run gives every fact: "normal" is gw0's pass (repeat 0), "reversed" gw1's (repeat 1),
"parallel" both. Only when the two workers opened a database file in common (or one of them did
not report) can each have disturbed the other's pass; then, and only then, the passes run again
in one plain pytest process (in order, then reversed, in one session), and "normal" and
"reversed" come from that run.

Plugins are loaded explicitly (PYTEST_DISABLE_PLUGIN_AUTOLOAD): pytest and the app's imports cost
about a second of CPU per process. The app runs with EXTRA_TABLES=20 (a realistic schema), so a
fresh schema per test shows in the CREATE TABLE count.

Report keys (read by test_04_async_testing.py):

    runs.<normal|reversed|parallel>
        tests       [{name, file, outcome, message}], file being the test file's stem
        timed_out, returncode, seconds, output_tail
    records     one line per alone-test of suite/hidden_tests.py, from the sessions that ran the
                passes: {worker, session_db, app_db, app_started}
    sessions    what each of those pytest sessions saw (plugins/course04_probe.py): {worker, ran,
                opened, closed, app_opened, create_table, schema_tables, lifespan_started, loops,
                open_db_files, driver_threads, overrides_left}
    workers     each xdist worker of the -n 2 run -> the database files its engines connected to
Without every session's report, "sessions" (or "workers") is missing and report["error"] says why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from course.grading.checking import Driver, DriverError
from course.manifest import find_module
from course.pytest_runner import start_pytest

HERE = Path(__file__).resolve().parent
SUITE = HERE / "suite"  # the course's own files: the hidden tests
# The given files (app, padding, pytest.ini, tests) are the reference ones: the exercise ships the same.
GIVEN = find_module("04").solution
PLUGINS = HERE / "plugins"
EXTRA_TABLES = "20"  # the app's padding: a realistic schema, so that building it per test shows
RUN_TIMEOUT = float(os.environ.get("COURSE04_RUN_TIMEOUT", "25"))  # seconds for the pytest -n 2 run
RERUN_TIMEOUT = 20  # seconds for the passes again in one process (only when the workers share a file)
TEST_TIMEOUT = 10  # seconds per test (pytest-timeout), so one hanging test is a message
PLUGIN_ARGS = ["-p", "pytest_asyncio.plugin", "-p", "pytest_timeout", "-p", "xdist.plugin", "-p", "course04_probe"]
# The usual order, then again (reversed by the probe plugin).
ORDER = ["tests/test_first.py", "tests/test_bookmarks.py", "tests/test_hidden.py"]
PASSES = [*ORDER, *ORDER, "--keep-duplicates"]


def files_for(conftest: Path) -> dict[str, Path]:
    given = {name: GIVEN / name for name in ("app.py", "padding.py", "pytest.ini", "tests/test_bookmarks.py")}
    return {**given, "conftest.py": conftest, "tests/test_first.py": SUITE / "first_test.py",
            "tests/test_hidden.py": SUITE / "hidden_tests.py"}


def read_jsons(folder: Path, pattern: str) -> list[dict]:
    out = []
    for path in sorted(folder.glob(pattern)):
        if path.suffix == ".jsonl":
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            out.append(json.loads(path.read_text()))
    return out


def run(d: Driver, name: str, conftest: Path, *args: str, timeout: float, env: dict | None = None) -> dict:
    """One pytest run with the probe plugin: its tests (both passes), records and probes."""
    records = d.scratch / f"records-{name}"
    records.mkdir()
    env = {"PYTHONPATH": str(PLUGINS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COURSE04_RECORD_DIR": str(records),
           "EXTRA_TABLES": EXTRA_TABLES, **(env or {})}
    done = start_pytest(*PLUGIN_ARGS, *args, "-o", f"timeout={TEST_TIMEOUT}", "-q", "--tb=line",
                        files=files_for(conftest), env=env, drop_env=("DATABASE_URL",), timeout=timeout,
                        prefix="course04-check-").wait()
    return {"timed_out": done.timed_out, "returncode": done.returncode, "seconds": round(done.seconds, 2),
            "output_tail": done.tail(15), "records": read_jsons(records, "records-*.jsonl"),
            "probes": read_jsons(records, "probe-*.json"),
            "tests": [{"name": t.name, "file": t.file, "outcome": t.outcome, "message": t.message, "repeat": t.repeat}
                      for t in done.tests]}


def split(result: dict) -> dict[str, dict]:
    """A run's first pass as "normal", its second (reversed) as "reversed", and all of it as "parallel"."""
    facts = {k: result[k] for k in ("timed_out", "returncode", "seconds", "output_tail")}

    def tests(*repeats: int) -> list[dict]:
        return [{k: v for k, v in t.items() if k != "repeat"} for t in result["tests"] if t["repeat"] in repeats]

    return {"normal": {**facts, "tests": tests(0)}, "reversed": {**facts, "tests": tests(1)},
            "parallel": {**facts, "tests": tests(0, 1)}}


def unfinished(d: Driver, result: dict, what: str) -> None:
    """Note why ``what`` is missing from the report: pytest did not finish every session."""
    state = (f"was still running after {result['seconds']:.0f} s and was stopped" if result["timed_out"]
             else f"ended (exit code {result['returncode']}) before every session reported")
    d.fail("pytest", "error", f"pytest {state}, so the checks have no {what}. Its last lines:\n{result['output_tail']}",
           "run pytest and pytest -n 2 in the exercise folder and read the first error.")


def main(d: Driver) -> None:
    conftest = d.target / "conftest.py"
    if not conftest.is_file():
        raise DriverError(f"there is no conftest.py in {d.target}", hint="write your fixtures in conftest.py, next to app.py.")
    with d.stage("pytest", limit=RUN_TIMEOUT + RERUN_TIMEOUT + 10, doing="running pytest with your conftest.py"):
        parallel = run(d, "parallel", conftest, "-n", "2", "--dist", "each", *PASSES, timeout=RUN_TIMEOUT,
                       env={"COURSE04_PASS_PER_WORKER": "1"})
        d.report["runs"] = runs = split(parallel)
        files = [set(p["databases"]) for p in parallel["probes"]]
        passes = parallel
        if not parallel["timed_out"] and not (len(files) == 2 and not files[0] & files[1]):
            # The workers shared a file (or one did not report): each may have disturbed the other's pass,
            # so the passes run again, alone.
            passes = run(d, "serial", conftest, *PASSES, timeout=RERUN_TIMEOUT)
            alone = split(passes)
            runs.update(normal=alone["normal"], reversed=alone["reversed"])
        d.report["records"] = passes["records"]
        if len(passes["probes"]) == (2 if passes is parallel else 1):
            d.report["sessions"] = [{k: v for k, v in p.items() if k != "databases"} for p in passes["probes"]]
        else:
            unfinished(d, passes, "report of what your fixtures did in every session")
        if len(files) == 2:
            d.report["workers"] = {p["worker"]: p["databases"] for p in parallel["probes"]}
        else:
            unfinished(d, parallel, "report of the database files each worker used")


if __name__ == "__main__":
    Driver.main(main)
