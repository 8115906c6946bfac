"""The grader's plumbing: modules, mistakes, driver timeouts and messages."""

from __future__ import annotations

import sys
import textwrap

import pytest

from course.checking import Unmet, expect, run_driver
from course.grader import find_module, format_grade, Grade, modules
from course.mistakes import Mistake, materialise


def test_modules_are_found_by_number_or_name() -> None:
    names = [m.name for m in modules()]
    assert names[0] == "01_database_lifecycle"
    assert find_module("1").name == find_module("01_database_lifecycle").name == "01_database_lifecycle"
    with pytest.raises(SystemExit, match="No module"):
        find_module("99")


def test_expect_carries_the_four_lines() -> None:
    with pytest.raises(Unmet) as info:
        expect(1 == 2, called="f()", expected="2", got="1", hint="add one")
    assert str(info.value) == "Called:   f()\nExpected: 2\nGot:      1\nHint:     add one"


def test_driver_timeout_becomes_a_message(tmp_path) -> None:
    script = tmp_path / "hang.py"
    script.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(Unmet, match="still running after 1 s"):
        run_driver(script, timeout=1)


def test_driver_crash_becomes_a_message(tmp_path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("raise SystemExit('exploded on purpose')\n")
    with pytest.raises(Unmet, match="exploded on purpose"):
        run_driver(script, timeout=10)


def test_driver_report_is_read(tmp_path) -> None:
    script = tmp_path / "ok.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(find_module('01').checks.parents[1])!r})\n"
                      "from course.checking import emit_report\nprint('noise')\nemit_report({'a': 1})\n")
    assert run_driver(script, timeout=20) == {"a": 1}


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


def test_report_names_first_failure_and_hint() -> None:
    module = find_module("01")
    g = Grade(module=module, target=module.exercise, records=[
        {"nodeid": "a", "test": "test_a", "name": "A works", "outcome": "passed", "unmet": None, "error": None, "traceback": ""},
        {"nodeid": "b", "test": "test_b", "name": "B works", "outcome": "failed", "error": None, "traceback": "tb",
         "unmet": {"called": "GET /b", "expected": "200", "got": "500", "hint": "look at B"}},
    ])
    text = format_grade(g)
    assert "[PASS] A works" in text and "[FAIL] B works" in text
    assert "First: B works" in text and "Expected: 200" in text and "Got:      500" in text and "Hint:     look at B" in text
    assert "tb" not in text and "tb" in format_grade(g, verbose=True)
