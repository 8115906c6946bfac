"""The course's modules, read from ``modules.yml`` at the repository root: the one list of what
each module is called, how long it takes and where its parts live.

    from course.manifest import ROOT, modules, find_module
    for m in modules(graded=True): print(m.number, m.title, m.exercise)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "MANIFEST", "Module", "modules", "find_module", "MIN_MISTAKES"]

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "modules.yml"
MIN_MISTAKES = 5  # known wrong answers each graded module's checks must reject


@dataclass(frozen=True)
class Module:
    number: str  # "01"
    slug: str  # "database_lifecycle"
    title: str
    failure: str
    lesson_minutes: int
    exercise_minutes: int
    prerequisites: tuple[str, ...]
    exercise_files: tuple[str, ...]

    @property
    def name(self) -> str:
        """The folder name: ``01_database_lifecycle``."""
        return f"{self.number}_{self.slug}"

    @property
    def graded(self) -> bool:
        """Whether the module has an exercise (module 00 has none)."""
        return bool(self.exercise_files)

    @property
    def notebook(self) -> Path:
        return ROOT / "notebooks" / f"{self.name}.ipynb"

    @property
    def exercise(self) -> Path:
        return ROOT / "exercises" / self.name

    @property
    def solution(self) -> Path:
        return ROOT / "solutions" / self.name

    @property
    def checks(self) -> Path:
        return ROOT / "checks" / self.name

    @property
    def check_suite(self) -> Path:
        return self.checks / f"test_{self.name}.py"

    @property
    def hints_file(self) -> Path:
        return self.checks / "HINTS.md"

    @property
    def mistakes_dir(self) -> Path:
        return self.checks / "mistakes"

    def parts(self) -> dict[str, Path]:
        """Every part a graded module must have, by what a maintainer would call it."""
        return {"notebook": self.notebook, "exercise folder": self.exercise, "exercise README": self.exercise / "README.md",
                "solution folder": self.solution, "check suite": self.check_suite, "hints": self.hints_file,
                "known mistakes folder": self.mistakes_dir}


@functools.cache
def _load(path: Path, mtime: float) -> tuple[Module, ...]:
    import yaml

    data = yaml.safe_load(path.read_text())
    out = []
    for entry in data["modules"]:
        out.append(Module(number=str(entry["number"]).zfill(2), slug=entry["slug"], title=entry["title"],
                          failure=entry.get("failure", ""), lesson_minutes=int(entry["lesson_minutes"]),
                          exercise_minutes=int(entry.get("exercise_minutes", 0)),
                          prerequisites=tuple(str(p).zfill(2) for p in entry.get("prerequisites", [])),
                          exercise_files=tuple(entry.get("exercise_files", []))))
    return tuple(out)


def modules(*, graded: bool | None = None) -> list[Module]:
    """The modules in course order; ``graded=True``: only those with an exercise."""
    found = _load(MANIFEST, MANIFEST.stat().st_mtime)
    return [m for m in found if graded is None or m.graded == graded]


def find_module(key: str, *, graded: bool = True) -> Module:
    """``"01"``, ``"1"``, ``"01_database_lifecycle"`` or a path ending in it -> the module.
    Raises ``LookupError`` naming the modules there are."""
    key = str(key).strip().rstrip("/").split("/")[-1]
    candidates = modules(graded=graded or None)
    for m in candidates:
        if key == m.name or (key.isdigit() and int(key) == int(m.number)):
            return m
    names = ", ".join(m.number for m in candidates)
    raise LookupError(f"there is no module {key!r}; the modules are {names}")


README_START, README_END = "<!-- modules:start -->", "<!-- modules:end -->"


def readme_table() -> str:
    """The README's module table, made from the manifest (tests keep the README equal to it)."""
    rows = ["| | module | the failure you will see | lesson + exercise |", "|---|---|---|---|"]
    for m in modules():
        minutes = f"{m.lesson_minutes} + {m.exercise_minutes} min" if m.graded else f"{m.lesson_minutes} min"
        rows.append(f"| {m.number} | {m.title} | {m.failure} | {minutes} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(readme_table())
