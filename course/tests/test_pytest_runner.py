"""course.pytest_runner: structured results, scratch folders, clean environment, timeouts that
stop the whole process group."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psutil

from course.pytest_runner import SCRATCH, run_pytest

TESTS = '''
import os, time, pytest

def test_ok():
    """It works."""

def test_bad():
    assert 1 == 2, "one is not two"

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_err(broken):
    pass

def test_env():
    assert "FORCE_COLOR" not in os.environ and os.environ["EXTRA"] == "yes"

@pytest.mark.parametrize("i", range(4))
def test_p(i):
    sum(range(20000))
'''


def test_results_per_test(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # as a notebook kernel sets it
    src = tmp_path / "t.py"
    src.write_text(TESTS)
    prefix = f"course-rt-{uuid.uuid4().hex[:8]}-"  # only this run's folder: a killed run elsewhere may have left one
    run = run_pytest("test_a.py", files={"test_a.py": src}, ini={}, env={"EXTRA": "yes"}, prefix=prefix)
    assert run.counts == {"passed": 6, "failed": 1, "error": 1, "skipped": 0}, run
    assert run["test_bad"].first_line == "AssertionError: one is not two"
    assert run["test_err"].outcome == "error" and "fixture broke" in run["test_err"].message
    assert run["test_ok"].doc == "It works" and run["test_p[2]"].file == "test_a"
    assert run.typical() >= 0 and not run.timed_out and run.returncode == 1
    assert not list(Path(SCRATCH).glob(f"{prefix}*")), "the scratch folder was left behind"


def test_duplicates_and_xdist_workers(tmp_path) -> None:
    src = tmp_path / "t.py"
    src.write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    run = run_pytest("test_x.py", "test_x.py", "--keep-duplicates", files={"test_x.py": src}, ini={})
    assert [(t.name, t.repeat) for t in run.tests] == [("test_a", 0), ("test_b", 0), ("test_a", 1), ("test_b", 1)]
    run = run_pytest("-n", "2", "test_x.py", files={"test_x.py": src}, ini={})
    assert run.counts["passed"] == 2 and {t.worker for t in run.tests} <= {"gw0", "gw1"}, run


def test_collection_error_is_a_result(tmp_path) -> None:
    src = tmp_path / "t.py"
    src.write_text("import no_such_module\n\ndef test_a():\n    pass\n")
    run = run_pytest("test_c.py", files={"test_c.py": src}, ini={})
    assert run.counts["error"] == 1 and "no_such_module" in run.tests[0].message, run


def test_timeout_stops_the_whole_group(tmp_path) -> None:
    src = tmp_path / "t.py"
    src.write_text("import time\n\ndef test_hang():\n    time.sleep(120)\n")
    start = time.perf_counter()
    prefix = f"course-rt-hang-{uuid.uuid4().hex[:8]}-"
    run = run_pytest("-n", "2", "test_h.py", files={"test_h.py": src}, ini={}, timeout=4, prefix=prefix)
    # Not a budget, a hang guard: a worker left running would hold the output until its sleep
    # ends (120 s); stopped with its group, the run returns a few seconds after its 4 s timeout.
    assert run.timed_out and run.returncode is None and time.perf_counter() - start < 60
    time.sleep(0.5)
    alive = [p for p in psutil.process_iter(["cmdline", "status"]) if prefix in " ".join(p.info["cmdline"] or [])
             and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not alive, f"still running: {alive}"
    assert not list(Path(SCRATCH).glob(f"{prefix}*"))
