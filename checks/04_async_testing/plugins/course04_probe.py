"""pytest plugin for the grader: record what the learner's fixtures do (the outcome of each test
comes from course.pytest_results).

* With ``--keep-duplicates`` and the test folder given twice, the second copy of the tests runs
  after the first, in reverse order: one process checks both orders.
* Class-level SQLAlchemy events (so they see every engine the learner's conftest creates):
  connections opened and closed, CREATE TABLE statements run.
* How many times the app's own lifespan ran (its ``lifespan_context`` is wrapped once the tests
  are collected): state set by hand, or a lifespan per test, shows here.
* When the session ends (after every fixture's teardown), database files still open, and the
  overrides left in ``app.dependency_overrides``.

Writes ``probe-<worker>.json`` into $COURSE04_RECORD_DIR.
"""

import contextlib
import gc
import json
import os
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_counts = {"opened": 0, "closed": 0, "create_table": 0, "statements": 0, "lifespan_started": 0}
_lock = threading.Lock()


def _opened(dbapi_connection, record):
    with _lock:
        _counts["opened"] += 1


def _closed(dbapi_connection, record=None):
    with _lock:
        _counts["closed"] += 1


def _statement(conn, cursor, statement, parameters, context, executemany):
    with _lock:
        _counts["statements"] += 1
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            _counts["create_table"] += 1


event.listen(Pool, "connect", _opened)
event.listen(Pool, "close", _closed)
event.listen(Pool, "close_detached", _closed)
event.listen(Engine, "before_cursor_execute", _statement)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    seen: set[str] = set()
    first, second = [], []
    for item in items:
        (second if item.nodeid in seen else first).append(item)
        seen.add(item.nodeid)
    items[:] = first + second[::-1]


def _app():
    module = sys.modules.get("app")
    return getattr(module, "app", None)


def pytest_collection_finish(session):
    app = _app()
    if app is None:
        return
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def counted(a):
        async with original(a) as state:
            with _lock:
                _counts["lifespan_started"] += 1
            yield state

    app.router.lifespan_context = counted


def _open_db_files() -> list[str]:
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith(".db"):
            paths.append(target)
    return paths


def pytest_sessionfinish(session, exitstatus):
    folder = os.environ.get("COURSE04_RECORD_DIR")
    if not folder:
        return
    if getattr(session.config.option, "numprocesses", None) and not hasattr(session.config, "workerinput"):
        return  # the xdist controller runs no tests; its workers write their own files
    gc.collect()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    data = dict(_counts, worker=worker, open_db_files=len(_open_db_files()),
                driver_threads=sum(1 for t in threading.enumerate() if "_connection_worker_thread" in t.name),
                collected=session.testscollected,
                overrides_left=[getattr(k, "__name__", repr(k)) for k in getattr(_app(), "dependency_overrides", {})])
    (Path(folder) / f"probe-{worker}.json").write_text(json.dumps(data))
