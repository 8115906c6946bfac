"""Notebook conveniences: show a demo file, import it fresh."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["show", "import_file", "reveal", "challenge"]

_counter = itertools.count()


def show(path: str | Path, *, lines: tuple[int, int] | None = None) -> Any:
    """Display a source file with syntax highlighting (a notebook shows it, a script prints it)."""
    from IPython.display import Code

    text = Path(path).read_text()
    if lines:
        text = "\n".join(text.splitlines()[lines[0] - 1 : lines[1]])
    return Code(text, language="python")


def import_file(path: str | Path) -> ModuleType:
    """Import a .py file as a brand-new module each call (re-running a cell gets fresh state:
    a new app, a new engine)."""
    path = Path(path).resolve()
    name = f"_course_demo_{path.stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def reveal(guess: Any, measured: Any, what: str = "") -> None:
    """The answer to a checkpoint: print the learner's prediction beside the measurement.

        guess = None          # (the cell before) your prediction, e.g. 30
        ...measure...
        course.reveal(guess, failed, "requests out of 50 that failed")
    """
    label = f" {what}" if what else ""
    if guess is None or guess is Ellipsis:
        print(f"Measured:{label} {measured}.  (Next time, write your guess in the cell above before you run.)")
    elif guess == measured:
        print(f"You predicted {guess!r}; measured{label}: {measured!r}. Exactly right.")
    else:
        print(f"You predicted {guess!r}; measured{label}: {measured!r}.")


def challenge(answer: Any, check: Any, reference: Any) -> Any:
    """Grade an in-notebook challenge: ``check(answer)`` must hold (it asserts or returns a bool).

    While the learner has not answered yet (``answer`` is None), the folded reference answer is
    checked instead, so running the notebook top to bottom proves that the check accepts a correct
    answer. Returns what was checked.
    """
    tried = reference if answer is None else answer
    ok = check(tried)
    if ok is False:
        raise AssertionError("not yet: this answer does not pass the challenge's check; "
                             "read the hint in the cell above, or unfold the answer")
    if answer is None:
        print("Not answered yet; the folded reference answer passes the check. Try your own!")
    else:
        print("Correct: your answer passes the check.")
    return tried
