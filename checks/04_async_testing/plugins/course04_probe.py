"""pytest plugin for the grader: record what the learner's fixtures do (the outcome of each test
comes from course.pytest_results).

* With ``--keep-duplicates`` and the test files given twice, the second copy of the tests runs
  after the first, in reverse order: one session checks both orders. Under xdist with
  $COURSE04_PASS_PER_WORKER set (``--dist each``: every worker gets every test), gw0 runs only the
  first copy and the other worker only the second; the copies a worker passes over still count as
  met, so course.pytest_results numbers the second copy's results ``repeat`` 1 there too.
* Class-level SQLAlchemy events (so they see every engine the learner's conftest creates):
  connections opened and closed (and how many of them the app's own engine opened), CREATE TABLE
  statements run, and every database file an engine connected to.
* How many times the app's own lifespan ran (its ``lifespan_context`` is wrapped once the tests
  are collected): state set by hand, or a lifespan per test, shows here.
* The event loop everything ran on: each async fixture of conftest.py (its setup), each test, the
  app's lifespan, and every connection an engine opened. Loops are numbered in the order this
  process first met them.
* When the session ends (after every fixture's teardown), database files still open, and the
  overrides left in ``app.dependency_overrides``.

Writes ``probe-<worker>.json`` into $COURSE04_RECORD_DIR.
"""

import asyncio
import contextlib
import functools
import gc
import inspect
import itertools
import json
import os
import sys
import threading
import weakref
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_counts = {"opened": 0, "closed": 0, "app_opened": 0, "create_table": 0, "lifespan_started": 0, "ran": 0}
_databases: set[str] = set()
_loops: dict[str, dict[int, int]] = {}  # what ran -> {loop number: times}
_numbers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int]" = weakref.WeakKeyDictionary()
_next_number = itertools.count(1)
_lock = threading.Lock()

APP_LIFESPAN = "the app's lifespan"
TESTS = "the tests"
CONNECTIONS = "an engine's connections"


def _saw(what: str) -> None:
    """Note the event loop running here (if any) under ``what``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    with _lock:
        number = _numbers.get(loop)
        if number is None:
            number = _numbers[loop] = next(_next_number)
        seen = _loops.setdefault(what, {})
        seen[number] = seen.get(number, 0) + 1


def _opened(dbapi_connection, record):
    with _lock:
        _counts["opened"] += 1
    _saw(CONNECTIONS)


def _app_opened(dbapi_connection, record):
    with _lock:
        _counts["app_opened"] += 1


def _closed(dbapi_connection, record=None):
    with _lock:
        _counts["closed"] += 1


def _statement(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        with _lock:
            _counts["create_table"] += 1


def _connected(conn):
    database = conn.engine.url.database
    if database and database != ":memory:" and not database.startswith("file::memory:"):
        with _lock:
            _databases.add(os.path.realpath(database))


event.listen(Pool, "connect", _opened)
event.listen(Pool, "close", _closed)
event.listen(Pool, "close_detached", _closed)
event.listen(Engine, "before_cursor_execute", _statement)
event.listen(Engine, "engine_connect", _connected)


_second_copy: set[int] = set()  # id() of the items of the second copy


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    seen: set[str] = set()
    first, second = [], []
    for item in items:
        (second if item.nodeid in seen else first).append(item)
        seen.add(item.nodeid)
    items[:] = first + second[::-1]
    _second_copy.update(id(item) for item in second)
    for item in items:  # each test notes the loop its body runs on
        test = getattr(item, "obj", None)
        if inspect.iscoroutinefunction(test):
            item.obj = _watched(test, TESTS)


def _watched(func, what: str):
    """``func`` (an async function or async generator function), noting its loop when it starts."""
    if inspect.isasyncgenfunction(func):
        @functools.wraps(func)
        async def watched_gen(*args, **kwargs):
            _saw(what)
            async for value in func(*args, **kwargs):
                yield value
        return watched_gen

    @functools.wraps(func)
    async def watched(*args, **kwargs):
        _saw(what)
        return await func(*args, **kwargs)
    return watched


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    """The learner's async fixtures (those pytest-asyncio runs) note the loop their setup runs on."""
    func = fixturedef.func
    mine = getattr(func, "__module__", None) == "conftest" and getattr(func, "_force_asyncio_fixture", False)
    if not (mine and (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func))):
        yield
        return
    fixturedef.func = _watched(func, f"fixture {fixturedef.argname}")
    try:
        yield
    finally:
        fixturedef.func = func


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and os.environ.get("COURSE04_PASS_PER_WORKER") and (id(item) in _second_copy) == (worker == "gw0"):
        return True  # the other worker's copy: passed over
    return None


def pytest_runtest_logfinish(nodeid, location):
    _counts["ran"] += 1


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
        _saw(APP_LIFESPAN)  # where the app's engine is made
        before = _counts["opened"]
        async with original(a) as state:
            with _lock:
                _counts["lifespan_started"] += 1
                _counts["app_opened"] += _counts["opened"] - before  # the app's startup (create_all)
            engine = getattr(getattr(a, "state", None), "engine", None)
            pool = getattr(getattr(engine, "sync_engine", None), "pool", None)
            if pool is not None:  # what the app's own engine opens from now on (a burst of requests)
                event.listen(pool, "connect", _app_opened)
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


@pytest.hookimpl(trylast=True)  # after every fixture's teardown
def pytest_sessionfinish(session, exitstatus):
    folder = os.environ.get("COURSE04_RECORD_DIR")
    if not folder:
        return
    if getattr(session.config.option, "numprocesses", None) and not hasattr(session.config, "workerinput"):
        return  # the xdist controller runs no tests; its workers write their own files
    gc.collect()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    metadata = getattr(getattr(sys.modules.get("app"), "Base", None), "metadata", None)
    data = dict(_counts, worker=worker, pid=os.getpid(), databases=sorted(_databases),
                loops={what: sorted(seen.items()) for what, seen in _loops.items()},
                schema_tables=len(metadata.tables) if metadata is not None else None,
                open_db_files=len(_open_db_files()),
                driver_threads=sum(1 for t in threading.enumerate() if "_connection_worker_thread" in t.name),
                overrides_left=[getattr(k, "__name__", repr(k)) for k in getattr(_app(), "dependency_overrides", {})])
    (Path(folder) / f"probe-{worker}.json").write_text(json.dumps(data))
