"""Every module in modules.yml has all its parts, and the files that must agree do.

Modules come from the manifest, never from a list here: a new module is checked the moment it
is added to modules.yml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from course.grading.hints import read_hints
from course.grading.mistakes import mistakes
from course.manifest import MIN_MISTAKES, README_END, README_START, ROOT, modules, readme_table

ALL = modules()
GRADED = modules(graded=True)
_SKIP = {"__pycache__", ".pytest_cache"}


def files(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")
            if p.is_file() and not (_SKIP & set(p.parts)) and p.suffix not in {".db", ".pyc"}}


def test_every_module_folder_is_in_the_manifest() -> None:
    listed = {m.name for m in ALL}
    for kind in ("notebooks", "exercises", "solutions", "checks"):
        found = {p.stem for p in (ROOT / kind).glob("[0-9][0-9]_*") if p.suffix in ("", ".ipynb")}
        assert found <= listed, f"{kind}/ has {sorted(found - listed)}, which modules.yml does not list"


@pytest.mark.parametrize("module", GRADED, ids=[m.name for m in GRADED])
def test_module_has_every_part(module) -> None:
    missing = [f"{part} ({path.relative_to(ROOT)})" for part, path in module.parts().items() if not path.exists()]
    assert not missing, f"module {module.number} lacks: {', '.join(missing)}"
    found = mistakes(module)
    assert len(found) >= MIN_MISTAKES, (f"module {module.number} has {len(found)} known mistakes under "
                                        f"{module.mistakes_dir.relative_to(ROOT)}; it needs at least {MIN_MISTAKES}")
    for name in module.exercise_files:
        assert (module.exercise / name).is_file(), f"modules.yml: {module.number} lists {name}, not in the exercise"


def test_notebook_only_modules_have_their_notebook() -> None:
    for m in ALL:
        assert m.notebook.exists(), f"module {m.number} has no notebook ({m.notebook.relative_to(ROOT)})"


@pytest.mark.parametrize("module", GRADED, ids=[m.name for m in GRADED])
def test_exercise_and_solution_have_the_same_files(module) -> None:
    exercise, solution = files(module.exercise), files(module.solution)
    assert solution - exercise == set(), f"{module.name}: solution-only files {solution - exercise}"
    assert exercise - solution <= {"README.md"}, f"{module.name}: exercise-only files {exercise - solution - {'README.md'}}"


@pytest.mark.parametrize("module", GRADED, ids=[m.name for m in GRADED])
def test_given_files_are_identical(module) -> None:
    """Files the learner does not edit (not in exercise_files) are the same in exercise and solution:
    the checks may use the solution's copies (module 04 does)."""
    given = files(module.solution) - set(module.exercise_files) - {"README.md"}
    differ = [n for n in sorted(given) if (module.exercise / n).read_bytes() != (module.solution / n).read_bytes()]
    assert not differ, f"{module.name}: given files differ between exercises/ and solutions/: {differ}"


@pytest.mark.parametrize("module", GRADED, ids=[m.name for m in GRADED])
def test_exercise_readme_agrees_with_the_manifest(module) -> None:
    text = (module.exercise / "README.md").read_text()
    m = re.search(r"\*\*Time:\*\*\s*(\d+) minutes", text)
    assert m and int(m[1]) == module.exercise_minutes, \
        f"{module.name}/README.md: its **Time:** line must say {module.exercise_minutes} minutes (modules.yml)"


@pytest.mark.parametrize("module", GRADED, ids=[m.name for m in GRADED])
def test_hints_cover_every_todo(module) -> None:
    todos = read_hints(module.hints_file)
    marked = set()
    for name in module.exercise_files:
        marked |= {int(n) for n in re.findall(r"TODO (\d+)", (module.exercise / name).read_text())}
    assert marked, f"{module.name}: no 'TODO <n>' in {module.exercise_files}"
    assert {t.todo for t in todos} == marked, \
        f"{module.name}: HINTS.md covers TODOs {sorted(t.todo for t in todos)}, the exercise has {sorted(marked)}"
    for t in todos:
        nudge, _, code = t.levels
        assert "```" not in nudge, f"{module.name} TODO {t.todo}: the nudge must not contain code"
        code_lines = {ln.strip() for ln in code.splitlines() if len(ln.strip()) > 12 and not ln.strip().startswith("```")}
        leaked = [ln for ln in code_lines if ln in nudge]
        assert not leaked, f"{module.name} TODO {t.todo}: the nudge gives the answer away: {leaked}"


def test_readme_module_table_matches_the_manifest() -> None:
    text = (ROOT / "README.md").read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    assert text[start:end].strip() == readme_table(), \
        "README.md's module table differs from modules.yml: paste the output of `python -m course.manifest`"
