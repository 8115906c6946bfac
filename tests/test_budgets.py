"""Time budgets a learner feels: grading the reference answer of each module. Measured alone
(serial phase of make test), so the figures mean something."""

from __future__ import annotations

import pytest

from course.grading.grader import format_grade, grade
from course.manifest import modules

GRADED = modules(graded=True)
SOLUTION_BUDGET = 5.0  # seconds for `course check NN --target solutions` on 2 cores


@pytest.mark.slow
@pytest.mark.serial
@pytest.mark.parametrize("module", GRADED, ids=[m.name for m in GRADED])
def test_grading_the_solution_is_quick(module, record_time) -> None:
    g = grade(module, "solutions")
    record_time(f"course check {module.number} --target solutions (alone)", g.seconds)
    assert g.passed, format_grade(g, verbose=True)
    assert g.seconds < SOLUTION_BUDGET, f"grading the solution took {g.seconds:.1f} s (budget {SOLUTION_BUDGET} s)"
