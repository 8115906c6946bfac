"""Driver for the module 04 checks: run the learner's conftest.py against the course's tests.

    python driver.py <module folder>

The learner's conftest.py is copied next to the course's own app.py, pytest.ini and tests
(the given ones and hidden ones) into a fresh temporary folder per run, and pytest runs there
in a subprocess, three times, side by side:

    ordered    the tests in their usual order, then all of them again in reverse order, in one
               session (--keep-duplicates; plugins/course04_probe.py puts the second copy last,
               reversed). The report splits it into "normal" and "reversed".
    parallel   the tests under ``pytest -n 2`` (pytest-xdist, two worker processes)
    baseline   12 hidden tests with the course's slow conftest (a fresh engine and schema per
               test), to time the learner's fixtures against

Running side by side keeps the check inside its time budget (pytest and the app's imports cost
about a second of CPU per process, which is also why plugins are loaded explicitly, with
PYTEST_DISABLE_PLUGIN_AUTOLOAD). The timing comparison therefore uses each test's CPU time,
which the other runs and other processes barely change. Every run uses the app with
EXTRA_TABLES=20 (a realistic schema), on memory-backed /dev/shm where there is one.

Prints one JSON report (course.checking.emit_report). Every subprocess has a timeout and is
killed with its children; every temporary folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from course.checking import ROOT, emit_report
from course.server import stop_process

HERE = Path(__file__).resolve().parent
SUITE = HERE / "suite"  # the course's own files: hidden tests and the slow baseline conftest
# The given files (app, padding, pytest.ini, tests) are the reference ones: the exercise ships the same.
GIVEN = ROOT / "solutions" / "04_async_testing"
PLUGINS = HERE / "plugins"
EXTRA_TABLES = "20"  # the app's padding: a realistic schema, so that building it per test shows
# Memory-backed /dev/shm where there is one: a shared machine's disk makes every fsync slow and erratic.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
BASELINE_TESTS = 12  # hidden tests the slow baseline runs: enough for a typical time, cheap for the budget
RUN_TIMEOUT = float(os.environ.get("COURSE04_RUN_TIMEOUT", "25"))  # seconds per pytest run
TEST_TIMEOUT = 10  # seconds per test (pytest-timeout), so one hanging test is a message


def build_run_dir(root: Path, name: str, conftest: Path) -> Path:
    run = root / name
    (run / "tests").mkdir(parents=True)
    (run / "records").mkdir()
    for name in ("app.py", "padding.py", "pytest.ini", "tests/test_bookmarks.py"):
        shutil.copy(GIVEN / name, run / name)
    shutil.copy(conftest, run / "conftest.py")
    shutil.copy(SUITE / "hidden_tests.py", run / "tests" / "test_hidden.py")
    return run


def start(run: Path, extra: list[str]) -> subprocess.Popen:
    plugins = ["-p", "pytest_asyncio.plugin", "-p", "pytest_timeout", "-p", "xdist.plugin", "-p", "course04_probe"]
    cmd = [sys.executable, "-m", "pytest", *plugins, *extra, "--basetemp", str(run / "tmp"),
           "-o", f"timeout={TEST_TIMEOUT}", "-q", "--tb=line", "--color=no", "-p", "no:cacheprovider"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "FORCE_COLOR", "DATABASE_URL", "COV_"))}
    env.update(PYTHONPATH=str(PLUGINS), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONUNBUFFERED="1", COURSE04_RECORD_DIR=str(run / "records"), EXTRA_TABLES=EXTRA_TABLES)
    with (run / "output.txt").open("w") as log:
        return subprocess.Popen(cmd, cwd=run, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def read_jsons(folder: Path, pattern: str) -> list[dict]:
    out = []
    for path in sorted(folder.glob(pattern)):
        if path.suffix == ".jsonl":
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            out.append(json.loads(path.read_text()))
    return out


def wait_all(running: dict[str, tuple[Path, subprocess.Popen, float]]) -> dict[str, tuple[float, bool]]:
    """Wait for every run, at most RUN_TIMEOUT seconds; stop the ones still running. -> name: (seconds, timed out)"""
    ended: dict[str, tuple[float, bool]] = {}
    while len(ended) < len(running):
        for name, (_, proc, started) in running.items():
            if name in ended:
                continue
            if proc.poll() is not None:
                ended[name] = (time.monotonic() - started, False)
            elif time.monotonic() - started > RUN_TIMEOUT:
                stop_process(proc, timeout=5)
                ended[name] = (time.monotonic() - started, True)
        time.sleep(0.02)
    return ended


def typical_cpu(tests: list[dict]) -> float | None:
    """CPU seconds per passed hidden test (the baseline runs only those): the mean of the middle 80%,
    which drops the first test (it pays for the session's fixtures)."""
    times = sorted(t["cpu"] for t in tests if t["file"] == "test_hidden" and t["outcome"] == "passed")
    cut = len(times) // 10
    return statistics.fmean(times[cut:len(times) - cut]) if times else None


def view(run: Path, proc: subprocess.Popen, seconds: float, timed_out: bool, tests: list[dict], probes: list[dict]) -> dict:
    counts = {k: sum(1 for t in tests if t["outcome"] == k) for k in ("passed", "failed", "error", "skipped")}
    output = (run / "output.txt").read_text(errors="replace")
    return {
        "returncode": proc.returncode, "timed_out": timed_out, "seconds": round(seconds, 2), "tests": tests,
        "counts": counts, "typical_test_cpu": typical_cpu(tests),
        "output_tail": "\n".join(output.strip().splitlines()[-15:]),
        "records": read_jsons(run / "records", "records-*.jsonl"),
        "probes": [{k: v for k, v in p.items() if k != "tests"} for p in probes],
    }


def main() -> None:
    target = Path(sys.argv[1]).resolve()
    conftest = target / "conftest.py"
    if not conftest.is_file():
        emit_report({"problem": f"there is no conftest.py in {target}"})
        return
    report: dict = {"problem": None, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="course04-check-", dir=SCRATCH) as tmp:
        root = Path(tmp)
        runs = {
            # The slowest first. Hidden tests first: xdist's first batches (4 tests each) then give both
            # workers hidden tests, which record the database each worker uses.
            "parallel": (conftest, ["-n", "2", "tests/test_hidden.py", "tests/test_bookmarks.py"]),
            "ordered": (conftest, ["tests", "tests", "--keep-duplicates"]),
            "baseline": (SUITE / "baseline_conftest.py", [f"tests/test_hidden.py::test_alone_in_the_database[{i}]"
                                                          for i in range(BASELINE_TESTS)]),
        }
        running = {}
        try:
            for name, (conf, extra) in runs.items():
                run = build_run_dir(root, name, conf)
                running[name] = (run, start(run, extra), time.monotonic())
            for name, (seconds, timed_out) in wait_all(running).items():
                run, proc, _ = running[name]
                probes = read_jsons(run / "records", "probe-*.json")
                tests = [t for p in probes for t in p["tests"]]
                if name == "ordered":
                    for view_name, number in (("normal", 0), ("reversed", 1)):
                        chosen = [t for t in tests if t["pass"] == number]
                        report["runs"][view_name] = view(run, proc, seconds, timed_out, chosen, probes)
                else:
                    report["runs"][name] = view(run, proc, seconds, timed_out, tests, probes)
        finally:
            for _, proc, _ in running.values():
                if proc.poll() is None:
                    stop_process(proc, timeout=5)
    emit_report(report)


if __name__ == "__main__":
    main()
