"""Known mistakes (the reference solution with one mistake in it) and other correct answers (the
reference solution written another way).

``checks/<module>/mistakes/<name>/mistake.yml`` says what the mistake is, which expectations
must catch it, and how to make it from the solution (exact find/replace edits, each of which
must match exactly once, so a mistake cannot silently stop applying when the solution changes):

    summary: the engine is created at import time      # one line: what is wrong
    caught_by: [test_no_engine_at_import]              # checks that must fail on it (at least one)
    still_passes: [test_app_runs]                      # optional: checks that must still pass
    edits:
      - file: app.py                                   # exact text, present exactly once
        find: |
          ...
        replace: |
          ...
      - file: extra.py                                 # or a whole file, new or replaced
        content: |
          ...

``checks/<module>/answers/<name>/answer.yml`` has the same ``summary`` and ``edits``: another
correct design (another scoping, another library) that every expectation must accept. A grader
that rejects a correct answer follows the reference's spelling, not the rule.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from course.manifest import Module

__all__ = ["Mistake", "mistakes", "answers", "materialise"]


@dataclass(frozen=True)
class Mistake:
    """A variant of the solution: a known mistake (``mistake.yml``) or another correct answer (``answer.yml``)."""

    module: Module
    name: str
    path: Path
    file: str = "mistake.yml"

    @property
    def spec(self) -> dict:
        return yaml.safe_load((self.path / self.file).read_text())

    @property
    def summary(self) -> str:
        return self.spec["summary"]

    @property
    def caught_by(self) -> list[str]:
        return list(self.spec["caught_by"])


def mistakes(module: Module) -> list[Mistake]:
    if not module.mistakes_dir.is_dir():
        return []
    return [Mistake(module, p.name, p) for p in sorted(module.mistakes_dir.iterdir()) if (p / "mistake.yml").exists()]


def answers(module: Module) -> list[Mistake]:
    """Other correct answers of the module (``checks/<module>/answers/<name>/answer.yml``)."""
    folder = module.checks / "answers"
    if not folder.is_dir():
        return []
    return [Mistake(module, p.name, p, "answer.yml") for p in sorted(folder.iterdir()) if (p / "answer.yml").exists()]


def materialise(mistake: Mistake, dest: Path) -> Path:
    """Copy the module's solution to ``dest/<module>`` and apply the mistake's edits."""
    out = dest / mistake.module.name
    shutil.copytree(mistake.module.solution, out, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    for edit in mistake.spec.get("edits", []):
        file = out / edit["file"]
        if "content" in edit:  # a whole new file
            file.write_text(edit["content"])
            continue
        text = file.read_text()
        count = text.count(edit["find"])
        if count != 1:
            raise ValueError(f"{mistake.path}/{mistake.file}: the text to find occurs {count} times in {edit['file']}, "
                             f"expected exactly once:\n{edit['find']}")
        file.write_text(text.replace(edit["find"], edit["replace"]))
    return out
