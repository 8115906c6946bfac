"""The exercise makes the learner transfer the idea, not copy the demo: no file the learner edits,
as the reference answer has it, shares more than a few consecutive lines with a demo file of the
module's notebook (the notebook and the exercise use different domains)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from course.manifest import ROOT, modules

GRADED = modules(graded=True)
MAX_SHARED = 6  # consecutive meaningful lines; a FastAPI app shares a handful with any other by nature
# Lines every app of the course has in common say nothing about copying.
TRIVIAL = {")", "]", "}", "pass", "try:", "else:", "finally:", "yield", "return", "@asynccontextmanager"}
# A documented recipe is meant to be used as written: SQLAlchemy's "serializable isolation /
# savepoints" recipe for pysqlite/aiosqlite (module 04 teaches it, the learner's conftest needs it).
RECIPES = {
    '@event.listens_for(engine.sync_engine, "connect")',
    "def _driver_does_not_begin(dbapi_connection, connection_record):",
    "dbapi_connection.isolation_level = None",
    '@event.listens_for(engine.sync_engine, "begin")',
    "def _emit_begin(conn):",
    'conn.exec_driver_sql("BEGIN")',
}

PENDING: dict[str, str] = {
}


def meaningful(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "import ", "from ")) or line in TRIVIAL or line in RECIPES:
            continue
        lines.append(line)
    return lines


def longest_shared(answer: Path, demo: Path) -> list[str]:
    a, b = meaningful(answer), meaningful(demo)
    m = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return a[m.a:m.a + m.size]


@pytest.mark.parametrize("module", GRADED, ids=[m.name for m in GRADED])
def test_answer_is_not_a_demo(module, request) -> None:
    if module.number in PENDING:
        request.applymarker(pytest.mark.xfail(reason=PENDING[module.number], strict=True))
    demos = sorted((ROOT / "notebooks" / module.name).glob("**/*.py"))
    worst: tuple[list[str], Path | None, Path | None] = ([], None, None)
    for name in module.exercise_files:
        answer = module.solution / name
        for demo in demos:
            shared = longest_shared(answer, demo)
            if len(shared) > len(worst[0]):
                worst = (shared, answer, demo)
    shared, answer, demo = worst
    assert len(shared) <= MAX_SHARED, (
        f"{answer.relative_to(ROOT)} shares {len(shared)} consecutive lines with {demo.relative_to(ROOT)} "
        f"(at most {MAX_SHARED}): the learner can copy the demo instead of applying the idea. They begin:\n  "
        + "\n  ".join(shared[:8]))
