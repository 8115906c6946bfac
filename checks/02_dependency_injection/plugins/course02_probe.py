"""pytest plugin for the grader of module 02: every httpx client built during the pytest run of the
learner's conftest.py, where it was built, and whether it is closed when the session ends.

Loaded with ``-p course02_probe`` (before any conftest.py is imported, so a client built when
conftest.py is imported counts too). ``CLIENTS`` holds ``(client, where)`` for every client built,
``where`` being the learner's own line that built it ("conftest.py line 12: ..."), or "" for the
course's own clients (fixture_tests.py reads ``CLIENTS`` to check a test's clients at teardown).
When the session ends (after every fixture's teardown, session-scoped ones too) it writes
``[{"kind", "where", "closed"}]`` for the learner's clients to $COURSE02_PROBE_RECORD.
"""

import json
import os
import traceback
from pathlib import Path

import httpx

CLIENTS: list = []
_RUN_FOLDER = os.getcwd() + os.sep  # pytest runs in the scratch folder holding app.py and conftest.py
_COURSE_FILES = ("test_course_fixture", "course02_probe")


def _where() -> str:
    for f in reversed(traceback.extract_stack()[:-2]):
        path = "" if f.filename.startswith("<") else os.path.abspath(f.filename)
        if path.startswith(_RUN_FOLDER) and not Path(path).name.startswith(_COURSE_FILES):
            return f"{Path(path).name} line {f.lineno}" + (f": {f.line.strip()}" if f.line else "")
    return ""


def _track(cls: type) -> None:
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        CLIENTS.append((self, _where()))

    cls.__init__ = __init__


_track(httpx.AsyncClient)
_track(httpx.Client)


def pytest_sessionfinish(session, exitstatus):
    record = os.environ.get("COURSE02_PROBE_RECORD")
    if record:
        clients = [{"kind": type(c).__name__, "where": where, "closed": c.is_closed} for c, where in CLIENTS if where]
        Path(record).write_text(json.dumps(clients))
