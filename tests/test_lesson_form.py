"""Every notebook follows the lesson form (AUTHORING.md): title and minutes from modules.yml,
questions and objectives, sections with minutes that add up, a checkpoint at least every 15
minutes, a challenge with its answer folded away, key points and the way to the exercise, and
code lines that fit the screen."""

from __future__ import annotations

import pytest

from course.manifest import modules
from course.tooling.lessonform import MAX_GAP, MAX_LINE, checkpoint_gaps, outline

ALL = modules()


@pytest.mark.parametrize("module", ALL, ids=[m.name for m in ALL])
def test_first_cell(module) -> None:
    o = outline(module.notebook)
    assert o.title == f"{module.number} · {module.title}", \
        f"{module.notebook.name}: the title must be '# {module.number} · {module.title}' (modules.yml), not {o.title!r}"
    assert o.lesson_minutes == module.lesson_minutes, \
        f"{module.notebook.name}: '**Time:** {module.lesson_minutes} minutes (lesson)' expected (modules.yml), got {o.time_line!r}"
    if module.graded:
        assert o.exercise_minutes == module.exercise_minutes, \
            f"{module.notebook.name}: '{module.exercise_minutes} minutes (exercise)' expected in {o.time_line!r}"
    assert 2 <= len(o.questions) <= 6, f"{module.notebook.name}: 2-6 **Questions** bullets, found {len(o.questions)}"
    assert 3 <= len(o.objectives) <= 6, f"{module.notebook.name}: 3-6 **Objectives** bullets, found {len(o.objectives)}"


@pytest.mark.parametrize("module", ALL, ids=[m.name for m in ALL])
def test_sections_add_up(module) -> None:
    o = outline(module.notebook)
    assert not o.untimed_sections, f"{module.notebook.name}: sections without '(N min)': {o.untimed_sections}"
    total = sum(s.minutes for s in o.sections)
    assert total == module.lesson_minutes, \
        f"{module.notebook.name}: the sections add up to {total} min, modules.yml says {module.lesson_minutes}"


@pytest.mark.parametrize("module", ALL, ids=[m.name for m in ALL])
def test_checkpoint_every_15_minutes(module) -> None:
    o = outline(module.notebook)
    assert not o.checkpoints_without_guess, \
        f"{module.notebook.name}: a checkpoint needs a code cell with `guess = None` right after it: {o.checkpoints_without_guess}"
    if module.lesson_minutes <= MAX_GAP and not module.graded:
        return
    gaps = checkpoint_gaps(o)
    assert o.checkpoints and max(gaps) <= MAX_GAP, (
        f"{module.notebook.name}: {o.checkpoints} checkpoint(s); lesson minutes between them {gaps}, "
        f"at most {MAX_GAP} allowed: " + "; ".join(f"{s.title} ({s.minutes} min{', checkpoint' if s.checkpoints else ''})"
                                                   for s in o.sections))


@pytest.mark.parametrize("module", [m for m in ALL if m.graded], ids=[m.name for m in ALL if m.graded])
def test_challenge_with_folded_answer(module) -> None:
    o = outline(module.notebook)
    assert o.challenges >= 1, f"{module.notebook.name}: no '### Challenge' cell"
    assert o.challenge_answers_folded >= 1, f"{module.notebook.name}: the challenge's answer is not folded (<details>)"
    text = module.notebook.read_text()
    assert "course.challenge(" in text, f"{module.notebook.name}: the challenge is not checked with course.challenge(...)"


@pytest.mark.parametrize("module", ALL, ids=[m.name for m in ALL])
def test_last_cell(module) -> None:
    last = outline(module.notebook).last_cell
    assert "## Key points" in last, f"{module.notebook.name}: the last cell must give the key points"
    if module.graded:
        assert f"exercises/{module.name}" in last and f"course check {module.number}" in last, \
            f"{module.notebook.name}: the last cell must point to exercises/{module.name} and `course check {module.number}`"
    else:
        following = [m for m in ALL if m.number > module.number]
        assert not following or following[0].notebook.name in last, \
            f"{module.notebook.name}: the last cell must point to the next notebook"


@pytest.mark.parametrize("module", ALL, ids=[m.name for m in ALL])
def test_code_lines_fit_the_screen(module) -> None:
    long = outline(module.notebook).long_lines
    first = "\n".join(f"  cell {i}, {len(line)} characters: {line.strip()[:80]}" for i, line in long[:5])
    assert not long, (
        f"{module.notebook.name}: {len(long)} code line(s) longer than {MAX_LINE} characters, cut off at "
        f"the cell's edge in JupyterLab; break them, name an intermediate value, or move harness and "
        f"plot code into `course`. The first:\n{first}")
