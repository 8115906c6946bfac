"""Files that must stay identical across a module's folders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Module 04 grades only conftest.py: the checks run it next to solutions/04_async_testing's given
# files, so the exercise must ship exactly those.
GIVEN_IN_04 = ["app.py", "padding.py", "pytest.ini", "tests/test_bookmarks.py"]


@pytest.mark.parametrize("name", GIVEN_IN_04)
def test_module_04_given_files_agree(name: str) -> None:
    exercise = (ROOT / "exercises/04_async_testing" / name).read_text()
    solution = (ROOT / "solutions/04_async_testing" / name).read_text()
    assert exercise == solution, f"{name} differs between exercises/ and solutions/"


@pytest.mark.parametrize("module", ["01_database_lifecycle", "02_dependency_injection", "04_async_testing"])
def test_exercise_and_solution_have_the_same_files(module: str) -> None:
    def files(base: Path) -> set[str]:
        return {str(p.relative_to(base)) for p in base.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".db", ".pyc"}}

    exercise, solution = files(ROOT / "exercises" / module), files(ROOT / "solutions" / module)
    assert solution - exercise == set(), f"{module}: solution-only files {solution - exercise}"
    assert exercise - solution <= {"README.md"}, f"{module}: exercise-only files {exercise - solution - {'README.md'}}"
