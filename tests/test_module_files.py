"""Files that must stay identical across a module's folders (the checks rely on the copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Module 04 grades only conftest.py: the checks run it next to their own copies of the rest.
SAME_IN_04 = [
    ("app.py", "app.py"),
    ("padding.py", "padding.py"),
    ("pytest.ini", "pytest.ini"),
    ("tests/test_bookmarks.py", "visible_tests.py"),
]


@pytest.mark.parametrize("exercise_name,suite_name", SAME_IN_04, ids=[a for a, _ in SAME_IN_04])
def test_module_04_copies_agree(exercise_name: str, suite_name: str) -> None:
    exercise = (ROOT / "exercises/04_async_testing" / exercise_name).read_text()
    solution = (ROOT / "solutions/04_async_testing" / exercise_name).read_text()
    suite = (ROOT / "checks/04_async_testing/suite" / suite_name).read_text()
    assert exercise == solution, f"{exercise_name} differs between exercises/ and solutions/"
    assert exercise == suite, f"{exercise_name} differs from checks/04_async_testing/suite/{suite_name}"


@pytest.mark.parametrize("module", ["01_database_lifecycle", "02_dependency_injection", "04_async_testing"])
def test_exercise_and_solution_have_the_same_files(module: str) -> None:
    def files(base: Path) -> set[str]:
        return {str(p.relative_to(base)) for p in base.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".db", ".pyc"}}

    exercise, solution = files(ROOT / "exercises" / module), files(ROOT / "solutions" / module)
    assert solution - exercise == set(), f"{module}: solution-only files {solution - exercise}"
    assert exercise - solution <= {"README.md"}, f"{module}: exercise-only files {exercise - solution - {'README.md'}}"
