"""What the generated pages read from a notebook: its sections, checkpoints, challenge, the files it
shows, the services it needs, and (from an executed copy) what each cell printed and how long it ran.

Everything here follows the lesson form (AUTHORING.md, checked by tests/test_lesson_form.py):
``## `` sections ending in their minutes, ``### Checkpoint:`` then a ``guess = None`` cell then a
cell ending in ``course.reveal(...)``, one ``### Challenge:`` with a ``<details>`` answer.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Section", "Checkpoint", "Challenge", "Lesson", "lesson", "cell_text", "SERVICES"]

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HEADING = re.compile(r"^## (?P<title>.+?)\s*$", re.M)
MINUTES = re.compile(r"\((?P<minutes>\d+) min\)\s*$")
# A section needs a server when one of its code cells asks for it (course.services / course.databases).
SERVICES = {
    "PostgreSQL": re.compile(r"\b(postgres_available|pg_sandbox)\("),
    "Redis": re.compile(r"\bredis_available\("),
    "RabbitMQ": re.compile(r"\brabbitmq_available\("),
}
SHOW = re.compile(r"course\.show\((?:DEMO\s*/\s*)?[\"']([^\"']+)[\"']")
DEFINES = re.compile(r"\s*(async def |def |class |@|\w+ = FastAPI\()")
# Cells that drive the harness: the learner runs them, the instructor does not type them.
HARNESS = re.compile(r"\bawait\b|course\.(fire|serve_|run_|check)|run_pytest|serve_lagged|assert\b")


def is_code_display(out) -> bool:
    """A source file shown by ``course.show`` (IPython's Code: HTML, LaTeX and plain text): code, not
    something the run printed."""
    data = out.get("data", {})
    return "text/latex" in data and "highlight" in data.get("text/html", "")


def cell_text(cell, *, code_displays: bool = False) -> str:
    """What a code cell showed: its streams, its results' text/plain, its errors (ANSI codes removed);
    the files it showed (``course.show``) only with ``code_displays=True``."""
    parts = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(out.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            if is_code_display(out) and not code_displays:
                continue
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n" + "\n".join(out.get("traceback", [])))
    return ANSI.sub("", "\n".join(parts))


def _seconds(cell) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return max(0.0, (parse(end) - parse(start)).total_seconds())


@dataclass
class Section:
    heading: str  # "2 · Pool exhaustion (10 min)"
    minutes: int | None
    cells: list[tuple[int, object]] = field(default_factory=list)  # (index in the notebook, cell)

    @property
    def title(self) -> str:
        """The heading without its minutes: ``2 · Pool exhaustion``."""
        return MINUTES.sub("", self.heading).strip()

    @property
    def anchor(self) -> str:
        """The heading's anchor, as GitHub and MyST (myst_heading_anchors) make it."""
        slug = self.heading.strip().lower().replace(" ", "-")
        return re.sub(r"[^\w\-]", "", slug)

    def code(self) -> list[tuple[int, object]]:
        return [(i, c) for i, c in self.cells if c.cell_type == "code"]

    def services(self) -> list[str]:
        source = "\n".join(line for _, c in self.code() for line in c.source.splitlines()
                           if not line.lstrip().startswith(("from ", "import ", "#")))
        return [name for name, pattern in SERVICES.items() if pattern.search(source)]

    def shown_files(self) -> list[str]:
        return [m[1] for _, c in self.code() for m in SHOW.finditer(c.source)]

    def live_code(self) -> list[str]:
        """Short cells that define something (a function, a class, an app) without the harness: the
        first line of each, to type with the room."""
        out = []
        for _, c in self.code():
            lines = [line for line in c.source.strip().splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
            if not lines or len(lines) > 15 or HARNESS.search(c.source) or SHOW.search(c.source):
                continue
            if DEFINES.match(lines[0]):
                out.append(lines[0].strip().rstrip(":"))
        return out

    def run_cells(self) -> int:
        return sum(1 for _, c in self.code() if HARNESS.search(c.source))

    def seconds(self) -> float:
        """How long its cells ran (an executed copy; 0 for a notebook without outputs)."""
        return sum(_seconds(c) for _, c in self.code())

    def text(self) -> str:
        """Everything its cells printed (an executed copy)."""
        return "\n".join(cell_text(c) for _, c in self.code())


@dataclass
class Checkpoint:
    section: Section
    question: str  # the heading's text after "### Checkpoint: "
    guess_hint: str  # the guess cell's comment: the form of the answer
    reveal_index: int | None  # the cell that ends in course.reveal(...)
    discussion: str  # the first paragraph of the markdown after the reveal: what the notebook says next

    @property
    def key(self) -> str:
        return self.question


@dataclass
class Challenge:
    section: Section
    title: str
    prompt: str  # the markdown under the heading, without the folded answer
    answer: str  # the <details> block's content (the reference answer)


@dataclass
class Lesson:
    path: Path
    nb: object
    sections: list[Section]
    checkpoints: list[Checkpoint]
    challenge: Challenge | None

    def section_of(self, index: int) -> Section | None:
        return next((s for s in self.sections if any(i == index for i, _ in s.cells)), None)

    def answer(self, checkpoint: Checkpoint) -> str | None:
        """The reveal's "Measured: ..." line in this (executed) notebook, without the reminder."""
        if checkpoint.reveal_index is None:
            return None
        text = cell_text(self.nb.cells[checkpoint.reveal_index])
        m = re.search(r"^Measured:\s*(.+?)\.\s+\(Next time", text, re.M)
        return m[1].strip() if m else None


def _first_paragraph(text: str, limit: int = 420) -> str:
    para = next((p.strip() for p in re.split(r"\n\s*\n", text) if p.strip() and not p.lstrip().startswith("#")), "")
    para = " ".join(para.split())
    if len(para) > limit:
        cut = para[:limit].rsplit(" ", 1)[0]
        para = cut + " ..."
    return para


class Node(dict):
    """A notebook's JSON with attribute access, like nbformat's NotebookNode (importing nbformat
    takes seconds; the doctor reads the notebooks and must answer in less)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value) -> None:
        self[name] = value


def _node(value):
    if isinstance(value, dict):
        return Node({k: _node(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_node(v) for v in value]
    return value


def read(path: Path):
    """A notebook (a file in nbformat 4), without nbformat's schema validation (the lesson-form
    test validates them): sources and texts joined into strings."""
    import json

    nb = _node(json.loads(Path(path).read_text()))
    for cell in nb.cells:  # a cell's source may be stored as a list of lines
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
        cell.setdefault("metadata", Node())
        for out in cell.get("outputs", []):
            if isinstance(out.get("text"), list):
                out["text"] = "".join(out["text"])
            for key, value in out.get("data", {}).items():
                if isinstance(value, list):
                    out["data"][key] = "".join(value)
    return nb


def lesson(path: Path, nb=None) -> Lesson:
    """Read a notebook (or an executed copy given as ``nb``) into its sections and checkpoints."""
    nb = nb if nb is not None else read(path)
    # A section starts at its heading, which may stand in the middle of a markdown cell: such a
    # cell belongs to both sections. marks: (cell index, offset in its source, section).
    first = Section("(before the first section)", None)
    sections, marks = [first], [(-1, 0, first)]
    for i, cell in enumerate(nb.cells):
        current = marks[-1][2]
        headings = list(HEADING.finditer(cell.source)) if cell.cell_type == "markdown" else []
        if not headings or cell.source[:headings[0].start()].strip():
            current.cells.append((i, cell))
        for m in headings:
            minutes = MINUTES.search(m["title"])
            section = Section(m["title"], int(minutes["minutes"]) if minutes else None, [(i, cell)])
            sections.append(section)
            marks.append((i, m.start(), section))

    def section_at(i: int, offset: int) -> Section:
        return [s for j, k, s in marks if (j, k) <= (i, offset)][-1]

    sections = [s for s in sections if s.cells]
    checkpoints, challenge = [], None
    cells = list(enumerate(nb.cells))
    for pos, (i, cell) in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        for m in re.finditer(r"^### Checkpoint:\s*(.+)$", cell.source, re.M):
            section = section_at(i, m.start())
            guess_hint, reveal, discussion = "", None, ""
            for j, later in cells[pos + 1:]:
                if later.cell_type == "code" and later.source.lstrip().startswith("guess") and not guess_hint:
                    guess_hint = later.source.partition("#")[2].strip()
                elif later.cell_type == "code" and "course.reveal(" in later.source:
                    reveal = j
                    nxt = next((c for _, c in cells[j + 1:] if c.cell_type == "markdown"), None)
                    discussion = _first_paragraph(nxt.source) if nxt is not None else ""
                    break
                elif later.cell_type == "markdown" and "### Checkpoint:" in later.source:
                    break
            checkpoints.append(Checkpoint(section, m[1].strip(), guess_hint, reveal, discussion))
        if (m := re.search(r"^### Challenge:\s*(.+)$", cell.source, re.M)) and challenge is None:
            body = cell.source[m.end():]
            answer = ""
            for _, later in cells[pos: pos + 4]:
                if later.cell_type == "markdown" and (d := re.search(r"<details>(.*?)</details>", later.source, re.S)):
                    answer = re.sub(r"<summary>.*?</summary>", "", d[1], flags=re.S).strip()
                    break
            prompt = re.sub(r"<details>.*?</details>", "", body, flags=re.S).strip()
            challenge = Challenge(section_at(i, m.start()), m[1].strip(), prompt, answer)
    return Lesson(Path(path), nb, sections, checkpoints, challenge)
