"""Progressive hints, one set per TODO of an exercise, from ``checks/NN_topic/HINTS.md``::

    # Hints for exercise 01

    ## TODO 1: where the engine lives
    ### Nudge
    What to look at; never the answer.
    ### In the notebook
    Which section shows it (quote its heading).
    ### Code
    The code.

``course hint 01`` lists the TODOs; ``course hint 01 3`` shows TODO 3's nudge,
``course hint 01 3 2`` the notebook pointer, ``course hint 01 3 3`` the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TodoHints", "LEVELS", "read_hints"]

LEVELS = ("Nudge", "In the notebook", "Code")


@dataclass(frozen=True)
class TodoHints:
    todo: int
    title: str
    levels: tuple[str, ...]  # the text of each level, in LEVELS order


def read_hints(path: Path) -> list[TodoHints]:
    """Parse HINTS.md; raises ValueError naming what is malformed."""
    text = path.read_text()
    out = []
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        m = re.match(r"TODO (\d+):\s*(.+)", head.strip())
        if not m:
            raise ValueError(f"{path}: section '## {head.strip()}' must be '## TODO <n>: <title>'")
        parts = re.split(r"^### ", body, flags=re.M)
        levels = {}
        for part in parts[1:]:
            name, _, content = part.partition("\n")
            levels[name.strip()] = content.strip()
        missing = [lv for lv in LEVELS if not levels.get(lv)]
        if missing:
            raise ValueError(f"{path}: TODO {m[1]} has no {', '.join(missing)} level")
        out.append(TodoHints(int(m[1]), m[2].strip(), tuple(levels[lv] for lv in LEVELS)))
    return out
