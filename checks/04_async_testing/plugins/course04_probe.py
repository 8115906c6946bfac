"""pytest plugin for the grader: record what the learner's fixtures do, test by test.

* Every test's outcome, its first error line, and its CPU time (setup + call + teardown, all
  threads of this process: other processes on a busy machine barely change it, unlike wall time).
* With ``--keep-duplicates`` and the test folder given twice, the second copy of the tests runs
  after the first, in reverse order: one process checks both orders ("pass" 0 and 1).
* Class-level SQLAlchemy events (so they see every engine the learner's conftest creates):
  connections opened and closed, CREATE TABLE statements run.
* When the session ends (after every fixture's teardown), database files still open.

Writes ``probe-<worker>.json`` into $COURSE04_RECORD_DIR.
"""

import gc
import json
import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_counts = {"opened": 0, "closed": 0, "create_table": 0, "statements": 0}
_lock = threading.Lock()
_pass_of: dict[int, int] = {}  # id(item) -> 0 (first run of the tests) or 1 (second run, reversed)
_tests: dict[tuple[int, str], dict] = {}


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
    _pass_of.update({id(item): 0 for item in first})
    _pass_of.update({id(item): 1 for item in second})


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    if report.when != "call":
        text = f"failed on {report.when}: {text}"
    return text[:600]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    record = _tests.setdefault((_pass_of.get(id(item), 0), item.nodeid), {
        "pass": _pass_of.get(id(item), 0), "file": item.path.stem, "name": item.name,
        "outcome": "passed", "message": "", "cpu": 0.0})
    start = time.process_time()
    yield
    record["cpu"] = time.process_time() - start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    record = _tests.get((_pass_of.get(id(item), 0), item.nodeid))
    if record is None or record["outcome"] in ("failed", "error"):
        return
    if report.failed:
        record["outcome"] = "failed" if report.when == "call" else "error"
        record["message"] = _message(report)
    elif report.skipped and report.when == "setup":
        record["outcome"] = "skipped"


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
                collected=session.testscollected, tests=list(_tests.values()))
    (Path(folder) / f"probe-{worker}.json").write_text(json.dumps(data))
