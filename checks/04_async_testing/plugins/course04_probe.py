"""pytest plugin for the grader: watch what the learner's fixtures do to the database.

It listens on every SQLAlchemy pool and engine (class-level events, so it sees engines the
learner's conftest creates) and, when the session ends (after every fixture's teardown),
writes one JSON file per process: connections opened and closed, CREATE TABLE statements
run, and database files this process still holds open.
"""

import gc
import json
import os
import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_counts = {"opened": 0, "closed": 0, "create_table": 0, "statements": 0}
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
                tests=session.testscollected)
    (Path(folder) / f"probe-{worker}.json").write_text(json.dumps(data))
