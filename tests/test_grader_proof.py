"""The grader grades: for every module, its checks fail on the untouched exercise, pass on the
solution, and fail on every known mistake (on the expectations the mistake names).

These proofs measure no time, so ``make test`` runs them in parallel with pytest-xdist. They record
how long each grading took under that load (shown at the end of ``make test``, never asserted); the
budget of ``course check NN --target solutions`` is ``make bench``'s, measured alone."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from course.grading.grader import format_grade, grade
from course.grading.mistakes import answers, materialise, mistakes
from course.manifest import modules

MODULES = modules(graded=True)
MISTAKES = [mk for m in MODULES for mk in mistakes(m)]
ANSWERS = [a for m in MODULES for a in answers(m)]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_solution_passes(module, record_time) -> None:
    g = grade(module, "solutions")
    record_time(f"course check {module.number} --target solutions (under parallel load)", g.seconds)
    assert g.passed, format_grade(g, verbose=True)


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_untouched_exercise_fails(module, record_time) -> None:
    g = grade(module, "exercises")
    record_time(f"course check {module.number} (untouched exercise, under parallel load)", g.seconds)
    assert g.problem is None, format_grade(g)
    assert not g.passed, f"the untouched exercise of {module.name} passes its checks"
    report = format_grade(g)
    assert "Expected:" in report and "Got:" in report, report


@pytest.mark.parametrize("mistake", MISTAKES, ids=[f"{mk.module.number}-{mk.name}" for mk in MISTAKES])
def test_mistake_is_caught(mistake) -> None:
    spec = mistake.spec
    assert spec.get("summary") and spec.get("caught_by"), f"{mistake.path}: summary and caught_by are required"
    with tempfile.TemporaryDirectory(prefix=f"mistake-{mistake.name}-") as tmp:
        folder = materialise(mistake, Path(tmp))
        g = grade(mistake.module, folder)
    assert g.problem is None, format_grade(g)
    names = {r.name for r in g.records}
    for test in [*mistake.caught_by, *spec.get("still_passes", [])]:
        assert test in names, f"{mistake.path}: no expectation named {test} (have {sorted(names)})"
    uncaught = [t for t in mistake.caught_by if t not in g.failed_names]
    assert not uncaught, f"mistake '{mistake.summary}' was not caught by {uncaught}\n" + format_grade(g)
    broken = [t for t in spec.get("still_passes", []) if t in g.failed_names]
    assert not broken, f"mistake '{mistake.summary}' breaks more than intended: {broken} failed\n" + format_grade(g)
    # The learner reads what failed: the message must say what was expected and what happened.
    first = g.failed[0]
    assert first.unmet and first.unmet["expected"] and first.unmet["got"], first


@pytest.mark.parametrize("answer", ANSWERS, ids=[f"{a.module.number}-{a.name}" for a in ANSWERS])
def test_other_answer_passes(answer) -> None:
    """Another correct design (checks/NN/answers/<name>/answer.yml) meets every expectation: the checks
    test the rule, not the reference answer's way of writing it."""
    assert answer.spec.get("summary"), f"{answer.path}: summary is required"
    with tempfile.TemporaryDirectory(prefix=f"answer-{answer.name}-") as tmp:
        folder = materialise(answer, Path(tmp))
        g = grade(answer.module, folder)
    assert g.passed, f"another correct answer ({answer.summary}) is rejected\n" + format_grade(g, verbose=True)
