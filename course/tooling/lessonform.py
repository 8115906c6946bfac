"""Read a notebook as the lesson form describes it (AUTHORING.md, "The lesson form"): the
first cell's title, minutes, questions and objectives; the sections with their minutes; the
checkpoints, the challenge and the last cell; the code lines too long to see whole.
tests/test_lesson_form.py checks every notebook with it; ``python -m course.tooling.lessonform``
prints the outline of each."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = ["Outline", "Section", "outline", "checkpoint_gaps", "MAX_GAP", "MAX_LINE"]

MAX_GAP = 15  # lesson minutes without a checkpoint, at most
MAX_LINE = 100  # characters in a code-cell line: the width a 1300-pixel JupyterLab shows without scrolling
_SECTION = re.compile(r"^## (?P<title>.+?)\s*\((?P<minutes>\d+) min\)\s*$", re.M)


@dataclass
class Section:
    title: str
    minutes: int
    checkpoints: int = 0


@dataclass
class Outline:
    path: Path
    title: str = ""
    time_line: str = ""
    lesson_minutes: int | None = None
    exercise_minutes: int | None = None
    questions: list[str] = field(default_factory=list)
    objectives: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    untimed_sections: list[str] = field(default_factory=list)
    checkpoints: int = 0
    checkpoints_without_guess: list[str] = field(default_factory=list)
    challenges: int = 0
    challenge_answers_folded: int = 0
    last_cell: str = ""
    long_lines: list[tuple[int, str]] = field(default_factory=list)
    """Code-cell lines longer than ``MAX_LINE``: (cell index, line), in notebook order."""


def _bullets(text: str, label: str) -> list[str]:
    m = re.search(rf"\*\*{label}\*\*\s*\n((?:\s*[-*] .+\n?)+)", text)
    return [line.strip()[2:] for line in m[1].strip().splitlines()] if m else []


def outline(path: str | Path) -> Outline:
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    out = Outline(path=path)
    first = cells[0].source if cells else ""
    out.title = first.splitlines()[0][2:].strip() if first.startswith("# ") else ""
    m = re.search(r"^\*\*Time:\*\*.*$", first, re.M)
    out.time_line = m[0] if m else ""
    if m:
        lesson = re.search(r"(\d+) minutes \(lesson\)", m[0])
        exercise = re.search(r"(\d+) minutes \(exercise\)", m[0])
        out.lesson_minutes = int(lesson[1]) if lesson else None
        out.exercise_minutes = int(exercise[1]) if exercise else None
    out.questions, out.objectives = _bullets(first + "\n", "Questions"), _bullets(first + "\n", "Objectives")
    current: Section | None = None
    for i, cell in enumerate(cells):
        if cell.cell_type == "code":
            out.long_lines += [(i, line) for line in cell.source.splitlines() if len(line) > MAX_LINE]
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("## ") and not line.startswith("## Key points"):
                sm = _SECTION.match(line)
                if sm:
                    current = Section(sm["title"], int(sm["minutes"]))
                    out.sections.append(current)
                else:
                    out.untimed_sections.append(line[3:].strip())
        head = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
        if head.startswith("### Checkpoint"):
            out.checkpoints += 1
            if current is not None:
                current.checkpoints += 1
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            if nxt is None or nxt.cell_type != "code" or not re.search(r"^\s*guess\w*\s*=", nxt.source, re.M):
                out.checkpoints_without_guess.append(head)
        if head.startswith("### Challenge"):
            out.challenges += 1
        if "<details>" in cell.source and "</details>" in cell.source:
            out.challenge_answers_folded += 1
    out.last_cell = cells[-1].source if cells else ""
    return out


def checkpoint_gaps(o: Outline) -> list[int]:
    """Lesson minutes between checkpoints: from the start to the first, between two, and from the
    last to the end. A checkpoint counts at the end of the section that holds it."""
    gaps, running = [], 0
    for s in o.sections:
        running += s.minutes
        if s.checkpoints:
            gaps.append(running)
            running = 0
    gaps.append(running)
    return gaps


if __name__ == "__main__":
    for p in sys.argv[1:] or sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb")):
        o = outline(p)
        print(f"{Path(p).name}: {o.lesson_minutes} min lesson, {len(o.sections)} sections, {o.checkpoints} checkpoints, "
              f"{o.challenges} challenge(s), gaps {checkpoint_gaps(o)}")
        for s in o.sections:
            print(f"    {s.minutes:>3} min  {'*' * s.checkpoints:<3} {s.title}")
