"""Notebook conveniences: show a demo file, import it fresh."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["show", "import_file"]

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
