"""Checks for module 04 (async testing): the learner's conftest.py, graded by behaviour.

driver.py copies the learner's conftest.py next to the course's own app.py, pytest.ini and
tests (given and hidden) and runs pytest in subprocesses: in order then in reverse order (one
session), and under ``-n 2``. Each check below reads its part of that one report. Nothing here
measures time: what makes a suite slow (an engine or a schema per test) is counted instead, so
the verdict does not depend on how busy the machine is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course.grading.checking import expect, nothing_left_running, require, run_driver

MODULE = "04_async_testing"
DRIVER = Path(__file__).with_name("driver.py")

VISIBLE = "test_bookmarks"
HIDDEN = "test_hidden"
ASYNC_FIXTURE_ERRORS = ("requested an async fixture", "async def functions are not natively supported")
SCHEMA_TABLES = 21  # the app's tables under the checks: bookmarks + EXTRA_TABLES=20 (driver.py)
MAX_CONNECTIONS = 8  # connections one pytest session may open: one engine's pool (per worker), not one per test


@pytest.fixture(scope="module")
def report(target: Path) -> dict:
    return run_driver(DRIVER, target, timeout=60, what="your conftest.py with the course's tests")


def _run(report: dict, name: str) -> dict:
    return require(report, "runs", expected="pytest runs with your conftest.py")[name]


def _describe(run: dict, tests: list[dict] | None = None) -> str:
    """What went wrong in a run, in a few lines a learner can act on."""
    if run["timed_out"]:
        return f"pytest was still running after {run['seconds']:.0f} s and was stopped. Last lines:\n{run['output_tail']}"
    tests = run["tests"] if tests is None else tests
    if not run["tests"]:
        return f"pytest ran no tests (exit code {run['returncode']}). Its last lines:\n{run['output_tail']}"
    bad = [t for t in tests if t["outcome"] in ("failed", "error")]
    if not bad:
        return "all passed"
    first = bad[0]
    what = "failed" if first["outcome"] == "failed" else "errored in a fixture"
    message = [line.strip() for line in first["message"].strip().splitlines() if line.strip()]
    text = " / ".join(message[:3])[:400]
    if len(tests) == 1:
        return f"{first['name']} {what}: {text}"
    return f"{len(bad)} of {len(tests)} failed; first: {first['name']} {what}: {text}"


def _bad(tests: list[dict]) -> list[dict]:
    return [t for t in tests if t["outcome"] in ("failed", "error")]


def _in(tests: list[dict], file: str) -> list[dict]:
    return [t for t in tests if t["file"] == file]


def test_conftest_loads(report: dict) -> None:
    """pytest loads your conftest.py and runs the tests without hanging"""
    run = _run(report, "normal")
    expect(run["tests"] and not run["timed_out"],
           called="pytest, in a folder with your conftest.py, the app and the tests",
           expected="the tests are collected and run",
           got=_describe(run),
           hint="run pytest in the exercise folder and read the first error (an import error in conftest.py?).")
    hung = [t for t in run["tests"] if "Timeout (>" in t["message"]]
    expect(not hung,
           called="pytest, with a 10 s limit per test (pytest-timeout)",
           expected="every test, with its fixtures, finishes within the limit",
           got=f"{len(hung)} test(s) stopped at the limit; first: {hung[0]['name']}: {hung[0]['message'][:200]}" if hung else "",
           hint="something a fixture awaits never completes: a lock, an event, a connection from an exhausted pool.")


def test_async_fixtures_run(report: dict) -> None:
    """pytest-asyncio runs your async fixtures (strict mode)"""
    run = _run(report, "normal")
    unhandled = [t for t in run["tests"] if any(s in t["message"] for s in ASYNC_FIXTURE_ERRORS)]
    got = _describe(run)
    if unhandled:
        errored = [t for t in run["tests"] if t["outcome"] == "error"]
        first = unhandled[0]
        got = (f"{len(errored)} of {len(run['tests'])} tests errored while their fixtures were set up; "
               f"{first['name']}: " + " ".join(first["message"].split())[:300])
    expect(run["tests"] and not unhandled,
           called="pytest with asyncio_mode = strict",
           expected="every async fixture is set up by pytest-asyncio",
           got=got,
           hint="in strict mode an async fixture needs @pytest_asyncio.fixture; @pytest.fixture leaves it to "
                "pytest, which cannot run it.", todo=1)


def test_lifespan_entered(report: dict) -> None:
    """The app's lifespan runs in your tests: GET /health answers 200"""
    run = _run(report, "normal")
    health = [t for t in run["tests"] if t["name"] == "test_health"]
    no_engine = health and "has no attribute 'engine'" in health[0]["message"]
    expect(health and health[0]["outcome"] == "passed",
           called="test_health: await client.get('/health'), which uses app.state.engine",
           expected="200 {'status': 'ok'}",
           got=_describe(run, health) if health else _describe(run),
           hint="httpx.ASGITransport does not run the app's lifespan, so the engine is never created. Enter it in a "
                "fixture: async with LifespanManager(app) (asgi_lifespan) or app.router.lifespan_context(app)."
                if no_engine or not health else "read the error: it happened before or during GET /health.", todo=1)


def test_rollback_per_test(report: dict) -> None:
    """Nothing a test writes is left for the next test"""
    run = _run(report, "normal")
    hidden = _in(run["tests"], HIDDEN)
    expect(hidden and not _bad(hidden),
           called=f"{len(hidden) or 24} hidden tests that each POST the same bookmark and expect to be alone",
           expected="every one of them passes",
           got=_describe(run, hidden) if hidden else _describe(run),
           hint="run each test inside a transaction on one connection and roll it back at the end; give the app "
                "sessions bound to that connection with join_transaction_mode='create_savepoint'. On SQLite add the "
                "driver recipe (isolation_level = None and emit BEGIN yourself), or the savepoint commits for real.", todo=2)


GIVEN_TEST_HINTS = {
    "test_health": "the app's lifespan must run: see the lifespan expectation.",
    "test_session_sees_what_a_request_wrote": "bind the session fixture and the app's sessions to the same connection.",
    "test_request_sees_what_the_session_wrote": "bind the session fixture and the app's sessions to the same connection.",
}


def _given_hint(test: dict) -> str:
    if test["name"] == "test_duplicate_url_is_409_and_keeps_the_first" and "assert [] ==" in test["message"]:
        return ("the first bookmark vanished with the 409: the app's rollback undid the whole test. With "
                "join_transaction_mode='create_savepoint' it undoes only its own SAVEPOINT.")
    return GIVEN_TEST_HINTS.get(test["name"], "")


def test_given_tests_pass(report: dict) -> None:
    """The given tests pass with your conftest.py"""
    run = _run(report, "normal")
    visible = _in(run["tests"], VISIBLE)
    bad = _bad(visible)
    hint = _given_hint(bad[0]) if bad else ""
    expect(visible and not bad,
           called="pytest tests/test_bookmarks.py",
           expected=f"all {len(visible) or 'the'} given tests pass",
           got=_describe(run, visible) if visible else _describe(run),
           hint=(hint + " " if hint else "") + "Run them yourself: pytest -x in the exercise folder.", todo=2)


def test_order_independent(report: dict) -> None:
    """The tests pass in reverse order too"""
    run = _run(report, "reversed")
    expect(run["tests"] and not _bad(run["tests"]) and not run["timed_out"],
           called="pytest with the tests in reverse order",
           expected="the same tests pass",
           got=_describe(run),
           hint="a test that passes in one order and fails in the other depends on what ran before it: "
                "roll back every test's writes.", todo=2)


def test_app_uses_test_database(report: dict) -> None:
    """The app under test uses the test database, not ./bookmarks.db"""
    records = _run(report, "normal")["records"]
    started = [r for r in records if r["app_started"]]
    wrong = [r for r in started if r["app_db"] != r["session_db"] or not r["session_db"]]
    if not records:
        got = "no hidden test got far enough to tell (see the failures above)"
    elif not started:
        got = "the app's engine was never created: its lifespan did not run"
    elif wrong and not wrong[0]["session_db"]:
        got = "your session uses an in-memory database, which no other engine (the app's) can open"
    elif wrong:
        got = f"your session uses {wrong[0]['session_db'] or ':memory:'} but the app's engine uses " \
              f"{wrong[0]['app_db'] or ':memory:'}"
    else:
        got = "they match"
    expect(records and started and not wrong,
           called="app.state.engine.url vs. PRAGMA database_list in your session, in every hidden test",
           expected="the app's own engine and your session open the same database file",
           got=got,
           hint="use a database file (tmp_path_factory) that both can open." if wrong and not wrong[0]["session_db"]
           else "the app reads DATABASE_URL when its lifespan starts: set it (monkeypatch.setenv, or "
                "pytest.MonkeyPatch.context() in a session fixture) before you enter the lifespan.", todo=1)


def test_parallel_passes(report: dict) -> None:
    """The suite passes under pytest -n 2"""
    run = _run(report, "parallel")
    expect(run["tests"] and not _bad(run["tests"]) and not run["timed_out"],
           called="pytest -n 2 (pytest-xdist: two worker processes)",
           expected="the same tests pass",
           got=_describe(run),
           hint="two processes share nothing in memory, but they do share files: give each worker its own "
                "database (the worker_id fixture: 'gw0', 'gw1', ...).", todo=3)


def test_database_per_worker(report: dict) -> None:
    """Each xdist worker has its own database"""
    records = _run(report, "parallel")["records"]
    by_worker: dict[str, set[str]] = {}
    for r in records:
        by_worker.setdefault(r["worker"], set()).add(r["session_db"] or f":memory: of process {r['pid']}")
    workers = sorted(by_worker)
    shared = set.intersection(*by_worker.values()) if len(workers) >= 2 else set()
    if len(workers) < 2:
        got = f"only {len(workers)} worker ran the hidden tests: " + (_describe(_run(report, "parallel")))
    elif shared:
        got = f"{' and '.join(workers)} both used {sorted(shared)[0]}"
    else:
        got = "; ".join(f"{w}: {sorted(by_worker[w])[0]}" for w in workers)
    expect(len(workers) >= 2 and not shared,
           called="pytest -n 2, with a hidden test asking each worker's session PRAGMA database_list",
           expected="gw0 and gw1 use different database files",
           got=got,
           hint="build the database path from the worker_id fixture (or tmp_path_factory, which is per worker).", todo=3)


def test_connections_closed(report: dict) -> None:
    """Every engine is disposed: no database connection is left open at the end"""
    probes = _run(report, "normal")["probes"]
    expect(probes, called="pytest, watching every SQLAlchemy pool", expected="the run finishes and reports",
           got=_describe(_run(report, "normal")))
    probe = probes[0]
    leaked = probe["opened"] - probe["closed"]
    expect(leaked <= 0,
           called=f"pytest ({probe['collected']} tests), counting connections opened and closed by every pool",
           expected="as many closed as opened once the session's fixtures are torn down",
           got=f"{probe['opened']} opened, {probe['closed']} closed: {leaked} left open "
               f"({probe['open_db_files']} database files still open, {probe['driver_threads']} driver threads alive)",
           hint="an engine you create in a fixture must be disposed in the same fixture: "
                "yield it, then await engine.dispose() (in a finally).", todo=2)


def test_schema_created_once(report: dict) -> None:
    """The schema is created once per session, not once per test"""
    probes = _run(report, "normal")["probes"]
    expect(probes, called="pytest, counting CREATE TABLE statements", expected="the run finishes and reports",
           got=_describe(_run(report, "normal")))
    probe = probes[0]
    limit = 2 * SCHEMA_TABLES
    expect(probe["create_table"] <= limit,
           called=f"pytest ({probe['collected']} tests), counting CREATE TABLE statements",
           expected=f"at most {limit} (the app has {SCHEMA_TABLES} tables under the checks: EXTRA_TABLES=20)",
           got=f"{probe['create_table']} CREATE TABLE statements",
           hint="create the schema in a session-scoped fixture and isolate tests with a rollback, "
                "not with a fresh database per test.", todo=2)


def test_app_lifespan_runs_once(report: dict) -> None:
    """The app's own lifespan runs, once per session (not state set by hand, not once per test)"""
    run = _run(report, "normal")
    probes = run["probes"]
    expect(probes, called="pytest, watching the app's lifespan", expected="the run finishes and reports",
           got=_describe(run))
    started = probes[0]["lifespan_started"]
    expect(started == 1,
           called=f"pytest ({probes[0]['collected']} tests), counting how often app.router.lifespan_context is entered",
           expected="exactly once: a session-scoped fixture enters the app's lifespan and every test shares it",
           got=f"{started} times" + (": the app's state was set some other way (by hand?), so the app's own startup "
                                     "code never ran in your tests" if started == 0 else
                                     ": a lifespan (and an engine) per test" if started > 1 else ""),
           hint="enter the lifespan the app defines (LifespanManager(app) or app.router.lifespan_context(app)) in a "
                "session-scoped fixture; setting app.state yourself tests a startup the app never does.", todo=1)


def test_overrides_removed(report: dict) -> None:
    """Your fixtures leave app.dependency_overrides as they found it"""
    run = _run(report, "normal")
    probes = run["probes"]
    expect(probes, called="pytest", expected="the run finishes and reports", got=_describe(run))
    left = probes[0]["overrides_left"]
    expect(not left, called="app.dependency_overrides after the last test and every fixture's teardown",
           expected="empty: each fixture removes the override it set",
           got=f"still set: {', '.join(left)}",
           hint="an override stays on the app, which lives for the whole session; remove exactly the key you set "
                "(pop(get_session, None)) in the fixture that set it, in a finally.", todo=1)


def test_one_engine_for_the_session(report: dict) -> None:
    """Your suite opens one engine for the session, not one per test (that is what keeps it fast)"""
    run = _run(report, "normal")
    probes = run["probes"]
    expect(probes, called="pytest, watching every SQLAlchemy pool", expected="the run finishes and reports",
           got=_describe(run))
    probe = probes[0]
    tests = len(run["tests"]) or probe["collected"]
    expect(probe["opened"] <= MAX_CONNECTIONS,
           called=f"pytest ({probe['collected']} tests, run twice: in order and reversed), counting the database "
                  "connections every engine opens",
           expected=f"at most {MAX_CONNECTIONS}: one engine for the session, its connections reused by every test",
           got=f"{probe['opened']} connections opened for {tests} tests"
               + (" (about one per test: a new engine, or a new pool, per test)" if probe["opened"] >= tests else ""),
           hint="an engine per test pays for a connection (and here a schema of 21 tables) every time; "
                "a session-scoped engine and a rolled-back transaction per test pay once.", todo=2)


def test_nothing_left_running(report: dict) -> None:
    """Nothing your fixtures started is still running after the tests"""
    nothing_left_running(report)
