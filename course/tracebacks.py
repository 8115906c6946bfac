"""The one way the course turns an exception into the line a learner can act on.

    >>> exception_line(exc, folder)
    "NameError: name 'x' is not defined (app.py line 12: x + 1)"

The innermost exception of the chain is the one to read (``raise HTTPException(...) from exc``
hides the cause under the wrapper); the line is the last frame of the learner's own files in
the chain's tracebacks: those under ``folder`` when it is given, else any file that is not the
standard library, an installed package or the course itself. The server's error record, the
driver's error and the grader all use it, so a learner reads one shape everywhere.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

__all__ = ["innermost", "learner_frame", "where", "exception_line"]

_COURSE = os.path.dirname(os.path.abspath(__file__))
_LIBRARIES = tuple({os.path.dirname(os.__file__), sys.prefix, sys.base_prefix, _COURSE})


def innermost(exc: BaseException) -> BaseException:
    """The last exception of the ``__cause__`` / ``__context__`` chain (cycles are cut)."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def _chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [exc], {id(exc)}
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        chain.append(nxt)
    return chain


def _mine(filename: str, folder: str | None) -> bool:
    if filename.startswith("<"):
        return False
    if folder is not None:
        return os.path.abspath(filename).startswith(folder)
    return not os.path.abspath(filename).startswith(_LIBRARIES)


def learner_frame(exc: BaseException, folder: str | os.PathLike | None = None) -> traceback.FrameSummary | None:
    """The learner's last frame: searched from the innermost exception outwards."""
    base = str(Path(folder).resolve()) + os.sep if folder is not None else None
    for e in reversed(_chain(exc)):
        frames = [f for f in traceback.extract_tb(e.__traceback__) if _mine(f.filename, base)]
        if frames:
            return frames[-1]
    return None


def where(exc: BaseException, folder: str | os.PathLike | None = None) -> str | None:
    """``"app.py line 12: x + 1"``, or None when no frame of the learner's is in the traceback."""
    f = learner_frame(exc, folder)
    if f is None:
        return None
    return f"{Path(f.filename).name} line {f.lineno}" + (f": {f.line.strip()}" if f.line else "")


def exception_line(exc: BaseException, folder: str | os.PathLike | None = None, *, inner: bool = True,
                   limit: int = 300) -> str:
    """``"Type: message (app.py line N: code)"``: the innermost exception (``inner=False``: ``exc``
    itself, for an error the learner's code raised directly) and the learner's line."""
    shown = innermost(exc) if inner else exc
    lines = [ln.strip() for ln in str(shown).splitlines() if ln.strip()]
    message = " / ".join(lines[:3])[:limit]
    place = where(exc, folder)
    return type(shown).__name__ + (f": {message}" if message else "") + (f" ({place})" if place else "")
