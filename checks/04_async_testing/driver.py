"""Driver for the module 04 checks: run the learner's conftest.py against the course's tests.

    python driver.py <module folder>

The learner's conftest.py is copied next to the course's own app.py, padding.py, pytest.ini
and tests (the given ones and hidden ones, from solutions/04_async_testing and suite/) into a
scratch folder per run, and pytest runs there (course.pytest_runner), twice, side by side:

    ordered    the tests in their usual order, then all of them again in reverse order, in one
               session (--keep-duplicates; plugins/course04_probe.py puts the second copy last,
               reversed). The report splits it into "normal" (repeat 0) and "reversed" (repeat 1).
    parallel   the tests under ``pytest -n 2`` (pytest-xdist, two worker processes)

Plugins are loaded explicitly (PYTEST_DISABLE_PLUGIN_AUTOLOAD): pytest and the app's imports cost
about a second of CPU per process. Every run uses the app with EXTRA_TABLES=20 (a realistic
schema), so a fresh schema per test shows in the CREATE TABLE count.

Report keys (read by test_04_async_testing.py):

    runs.<normal|reversed|parallel>
        tests       [TestResult as a dict: name, file, outcome, message, cpu, repeat, worker, ...]
        timed_out, returncode, seconds, output_tail
        records     one line per hidden test: {worker, pid, session_db, app_db, app_started}
        probes      one per pytest process: {worker, opened, closed, create_table, open_db_files,
                    driver_threads, collected}
"""

from __future__ import annotations

import dataclasses
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
RUN_TIMEOUT = float(os.environ.get("COURSE04_RUN_TIMEOUT", "25"))  # seconds per pytest run
TEST_TIMEOUT = 10  # seconds per test (pytest-timeout), so one hanging test is a message
PLUGIN_ARGS = ["-p", "pytest_asyncio.plugin", "-p", "pytest_timeout", "-p", "xdist.plugin", "-p", "course04_probe"]


def files_for(conftest: Path) -> dict[str, Path]:
    given = {name: GIVEN / name for name in ("app.py", "padding.py", "pytest.ini", "tests/test_bookmarks.py")}
    return {**given, "conftest.py": conftest, "tests/test_hidden.py": SUITE / "hidden_tests.py"}


def read_jsons(folder: Path, pattern: str) -> list[dict]:
    out = []
    for path in sorted(folder.glob(pattern)):
        if path.suffix == ".jsonl":
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            out.append(json.loads(path.read_text()))
    return out


def main(d: Driver) -> None:
    conftest = d.target / "conftest.py"
    if not conftest.is_file():
        raise DriverError(f"there is no conftest.py in {d.target}", hint="write your fixtures in conftest.py, next to app.py.")
    runs = {
        # Hidden tests first under -n 2: xdist's first batches then give both workers hidden tests,
        # which record the database each worker uses.
        "parallel": ["-n", "2", "tests/test_hidden.py", "tests/test_bookmarks.py"],
        "ordered": ["tests", "tests", "--keep-duplicates"],
    }
    with d.stage("pytest", limit=RUN_TIMEOUT + 15, doing="running pytest with your conftest.py"):
        started = {}
        for name, args in runs.items():
            records = d.scratch / f"records-{name}"
            records.mkdir()
            env = {"PYTHONPATH": str(PLUGINS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
                   "COURSE04_RECORD_DIR": str(records), "EXTRA_TABLES": EXTRA_TABLES}
            started[name] = (records, start_pytest(*PLUGIN_ARGS, *args, "-o", f"timeout={TEST_TIMEOUT}", "-q",
                                                   "--tb=line", files=files_for(conftest), env=env,
                                                   drop_env=("DATABASE_URL",), timeout=RUN_TIMEOUT, prefix="course04-check-"))
        d.report["runs"] = {}
        for name, (records, proc) in started.items():
            run = proc.wait()
            common = {"timed_out": run.timed_out, "returncode": run.returncode, "seconds": round(run.seconds, 2),
                      "output_tail": run.tail(15), "records": read_jsons(records, "records-*.jsonl"),
                      "probes": read_jsons(records, "probe-*.json")}
            tests = [dataclasses.asdict(t) for t in run.tests]
            for t in tests:
                t["longrepr"] = ""  # the messages are enough; keep the report small
            if name == "ordered":
                d.report["runs"]["normal"] = {**common, "tests": [t for t in tests if t["repeat"] == 0]}
                d.report["runs"]["reversed"] = {**common, "tests": [t for t in tests if t["repeat"] == 1]}
            else:
                d.report["runs"][name] = {**common, "tests": tests}


if __name__ == "__main__":
    Driver.main(main)
