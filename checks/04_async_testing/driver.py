"""Driver for the module 04 checks: run the learner's conftest.py against the course's tests.

    python driver.py <module folder>

The learner's conftest.py is copied next to the course's own app.py, pytest.ini and tests
(the given ones and hidden ones) into a fresh temporary folder per run, and pytest runs there
in a subprocess, four times:

    normal     the tests in their usual order
    reversed   the same tests in reverse order
    parallel   the same tests under ``pytest -n 2`` (pytest-xdist)
    baseline   the same tests with the course's slow conftest (fresh schema per test), to time against

The four runs go side by side to stay inside the time budget (pytest and the app's imports
cost about a second of CPU per process); the timing comparison therefore uses per-test
medians of two runs that shared the machine, which a busy neighbour skews far less than totals.
Plugins are loaded explicitly (PYTEST_DISABLE_PLUGIN_AUTOLOAD) for the same reason.
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
import xml.etree.ElementTree as ET
from pathlib import Path

from course.checking import emit_report
from course.server import stop_process

HERE = Path(__file__).resolve().parent
SUITE = HERE / "suite"
PLUGINS = HERE / "plugins"
RUN_TIMEOUT = float(os.environ.get("COURSE04_RUN_TIMEOUT", "25"))  # seconds per pytest run
TEST_TIMEOUT = 10  # seconds per test (pytest-timeout), so one hanging test is a message


def build_run_dir(root: Path, name: str, conftest: Path) -> Path:
    run = root / name
    (run / "tests").mkdir(parents=True)
    (run / "records").mkdir()
    shutil.copy(SUITE / "app.py", run / "app.py")
    shutil.copy(SUITE / "pytest.ini", run / "pytest.ini")
    shutil.copy(conftest, run / "conftest.py")
    shutil.copy(SUITE / "visible_tests.py", run / "tests" / "test_bookmarks.py")
    shutil.copy(SUITE / "hidden_tests.py", run / "tests" / "test_hidden.py")
    return run


def start(run: Path, extra: list[str]) -> subprocess.Popen:
    plugins = ["-p", "pytest_asyncio.plugin", "-p", "pytest_timeout", "-p", "xdist.plugin", "-p", "course04_probe"]
    cmd = [sys.executable, "-m", "pytest", *plugins, *extra,
           "--junitxml", str(run / "junit.xml"), "--basetemp", str(run / "tmp"),
           "-o", f"timeout={TEST_TIMEOUT}", "-q", "--color=no", "-p", "no:cacheprovider"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "FORCE_COLOR", "DATABASE_URL", "COV_"))}
    env.update(PYTHONPATH=str(PLUGINS), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               COURSE04_RECORD_DIR=str(run / "records"))
    log = (run / "output.txt").open("w")
    try:
        return subprocess.Popen(cmd, cwd=run, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def parse_junit(path: Path) -> list[dict]:
    if not path.exists():
        return []
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or node.text or "").strip()
                break
        classname = case.get("classname", "")
        tests.append({"file": classname.rsplit(".", 1)[-1], "name": case.get("name", ""), "outcome": outcome,
                      "message": message[:600], "time": float(case.get("time") or 0.0)})
    return tests


def read_jsons(folder: Path, pattern: str) -> list[dict]:
    out = []
    for path in sorted(folder.glob(pattern)):
        if path.suffix == ".jsonl":
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            out.append(json.loads(path.read_text()))
    return out


def finish(run: Path, proc: subprocess.Popen, started: float) -> dict:
    timed_out = False
    try:
        proc.wait(timeout=max(1.0, RUN_TIMEOUT - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_process(proc, timeout=5)
    seconds = time.monotonic() - started
    output = (run / "output.txt").read_text(errors="replace")
    tests = parse_junit(run / "junit.xml")
    counts = {k: sum(1 for t in tests if t["outcome"] == k) for k in ("passed", "failed", "error", "skipped")}
    times = [t["time"] for t in tests if t["outcome"] == "passed"]
    return {
        "returncode": proc.returncode, "timed_out": timed_out, "seconds": round(seconds, 2), "tests": tests,
        "counts": counts, "median_test_seconds": statistics.median(times) if times else None,
        "total_test_seconds": round(sum(times), 4),
        "output_tail": "\n".join(output.strip().splitlines()[-15:]),
        "records": read_jsons(run / "records", "records-*.jsonl"),
        "probes": read_jsons(run / "records", "probe-*.json"),
    }


def main() -> None:
    target = Path(sys.argv[1]).resolve()
    conftest = target / "conftest.py"
    if not conftest.is_file():
        emit_report({"problem": f"there is no conftest.py in {target}"})
        return
    report: dict = {"problem": None, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="course04-check-") as tmp:
        root = Path(tmp)
        runs = {
            "parallel": (conftest, ["-n", "2"]),  # the slowest first
            "normal": (conftest, []),
            "baseline": (SUITE / "baseline_conftest.py", []),
            "reversed": (conftest, ["-p", "course04_reverse"]),
        }
        running = {}
        try:
            for name, (conf, extra) in runs.items():
                run = build_run_dir(root, name, conf)
                running[name] = (run, start(run, extra), time.monotonic())
            for name, (run, proc, started) in running.items():
                report["runs"][name] = finish(run, proc, started)
        finally:
            for _, proc, _ in running.values():
                if proc.poll() is None:
                    stop_process(proc, timeout=5)
    emit_report(report)


if __name__ == "__main__":
    main()
