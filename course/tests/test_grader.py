"""The grader's plumbing: the driver skeleton, its time limits and messages, mistakes, the report."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from course.grading.checking import Unmet, describe, expect, require, run_driver
from course.grading.grader import Grade, format_grade, resolve_target
from course.grading.mistakes import Mistake, materialise
from course.manifest import ROOT, find_module, modules
from course.pytest_runner import TestResult


def test_modules_are_found_by_number_or_name() -> None:
    names = [m.name for m in modules(graded=True)]
    assert names[0] == "01_database_lifecycle"
    assert find_module("1").name == find_module("01_database_lifecycle").name == "01_database_lifecycle"
    with pytest.raises(LookupError, match="no module '99'"):
        find_module("99")


def test_one_resolver_for_every_target(tmp_path, monkeypatch) -> None:
    m = find_module("01")
    assert resolve_target(m, None) == resolve_target(m, "exercises") == m.exercise
    assert resolve_target(m, "solutions") == m.solution
    (tmp_path / m.name).mkdir()
    assert resolve_target(m, tmp_path) == tmp_path / m.name  # a folder holding the module
    assert resolve_target(m, tmp_path / m.name) == tmp_path / m.name  # the module folder itself
    monkeypatch.chdir(tmp_path)
    assert resolve_target(m, m.name) == tmp_path / m.name  # relative to the current directory


def test_expect_carries_the_four_lines() -> None:
    with pytest.raises(Unmet) as info:
        expect(1 == 2, called="f()", expected="2", got="1", hint="add one")
    assert str(info.value) == "Called:   f()\nExpected: 2\nGot:      1\nHint:     add one"
    assert describe({"expected": "a", "got": "b\nc", "hint": "h", "more": "course hint 01 2"}, indent="  ") == \
        "  Expected: a\n  Got:      b\n            c\n  Hint:     h  (more: course hint 01 2)"


def test_require_says_how_far_the_code_got() -> None:
    report = {"stage": "import", "error": {"stage": "import", "kind": "error", "doing": "importing app.py",
                                           "message": "app.py defines no `app`", "hint": "keep the name"}}
    with pytest.raises(Unmet) as info:
        require(report, "single")
    assert info.value.got == "app.py defines no `app`" and "importing app.py" in info.value.called
    assert require({"a": 1, "b": 2}, "a", "b") == (1, 2)


def _driver(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "driver.py"
    script.write_text("from course.grading.checking import Driver, DriverError\n\n" + textwrap.dedent(body)
                      + "\n\nif __name__ == '__main__':\n    Driver.main(main)\n")
    return script


def _learner(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "learner"
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(source))
    return folder


IMPORT_DRIVER = """
def main(d):
    with d.stage("import", limit=2, doing="importing app.py"):
        d.import_learner("app.py", needs="app")
    d.report["imported"] = True
"""


def test_missing_name_is_named(tmp_path) -> None:
    report = run_driver(_driver(tmp_path, IMPORT_DRIVER), _learner(tmp_path, "application = 1\n"), timeout=20)
    assert report["error"]["message"].startswith("app.py defines no `app`"), report
    assert "imported" not in report


def test_learner_error_names_the_line(tmp_path) -> None:
    report = run_driver(_driver(tmp_path, IMPORT_DRIVER), _learner(tmp_path, "x = 1\ny = undefined_name\n"), timeout=20)
    assert report["error"]["message"] == ("NameError: name 'undefined_name' is not defined "
                                          "(app.py line 2: y = undefined_name), while importing app.py"), report


def test_a_hang_names_its_stage_within_the_limit(tmp_path) -> None:
    # A report at all means the stage's own 2 s limit stopped the hang: had run_driver's outer
    # timeout stopped it instead, there would be no report but an Unmet. No seconds to assert.
    report = run_driver(_driver(tmp_path, IMPORT_DRIVER), _learner(tmp_path, "while True:\n    pass\n"), timeout=20)
    assert report["error"]["kind"] == "timeout"
    assert report["error"]["message"] == "importing app.py did not finish within 2 s; it was stopped", report


def test_processes_left_running_are_stopped_and_named(tmp_path) -> None:
    import psutil

    learner = _learner(tmp_path, """
        import subprocess, sys
        # Inherits the driver's output, and a second one detaches into its own session.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(121)"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        app = 1
    """)
    # Waiting on a child's pipe would last until run_driver's timeout (the children sleep two
    # minutes); returning before it is the behaviour. A hang guard, not a budget: on any machine
    # this takes a second or two.
    timeout = 60
    start = time.perf_counter()
    report = run_driver(_driver(tmp_path, IMPORT_DRIVER), learner, timeout=timeout)
    assert time.perf_counter() - start < timeout, "the grader waited on a child's pipe"
    assert report["imported"] and len(report["leftover_processes"]) == 2, report["leftover_processes"]
    alive = [p for p in psutil.process_iter(["cmdline", "status"]) if "time.sleep(12" in " ".join(p.info["cmdline"] or [])
             and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not alive


def test_driver_crash_becomes_a_message(tmp_path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("raise SystemExit('exploded on purpose')\n")
    with pytest.raises(Unmet, match="exploded on purpose"):
        run_driver(script, tmp_path, timeout=10)


def test_driver_timeout_becomes_a_message(tmp_path) -> None:
    script = tmp_path / "hang.py"
    script.write_text("print('COURSE-DRIVER-STAGE:requests', flush=True)\nimport time\ntime.sleep(60)\n")
    with pytest.raises(Unmet, match=r"still running after 1 s \(during its stage 'requests'\)"):
        run_driver(script, tmp_path, timeout=1)


def test_scratch_folder_is_removed_even_when_killed(tmp_path) -> None:
    script = _driver(tmp_path, """
    import os, time
    def main(d):
        (d.scratch / "shop.db").write_text("x")
        print("SCRATCH=" + str(d.scratch), flush=True)
        os.kill(os.getpid(), 9)
    """)
    with pytest.raises(Unmet):
        run_driver(script, tmp_path, timeout=10)
    import tempfile
    assert not list(Path(tempfile.gettempdir()).glob("course-check-*/shop.db"))


def test_mistake_edits_must_match_exactly_once(tmp_path) -> None:
    module = find_module("01")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mistake.yml").write_text(textwrap.dedent("""
        summary: edits text that is not there
        caught_by: [test_app_runs]
        edits:
          - file: app.py
            find: "this text is not in the solution"
            replace: ""
    """))
    with pytest.raises(ValueError, match="occurs 0 times"):
        materialise(Mistake(module, "bad", bad), tmp_path / "out")


def test_report_names_first_failure_and_the_todo_hint() -> None:
    module = find_module("01")
    g = Grade(module=module, target=ROOT / "elsewhere" / module.name, records=[
        TestResult("a", "test_a", "t", "passed", doc="A works"),
        TestResult("b", "test_b", "t", "failed", doc="B works", longrepr="tb-text",
                   unmet={"called": "GET /b", "expected": "200", "got": "500", "hint": "look at B", "todo": 3}),
    ])
    text = format_grade(g)
    assert "[PASS] A works" in text and "[FAIL] B works" in text
    assert "First: B works" in text and "Expected: 200" in text and "Got:      500" in text
    assert "Hint:     look at B  (more: course hint 01 3)" in text
    assert "--target elsewhere/01_database_lifecycle -v" in text, "the -v command must keep the graded folder"
    assert "tb-text" not in text and "tb-text" in format_grade(g, verbose=True)
