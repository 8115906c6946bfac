"""Checks for module 04 (async testing): the learner's conftest.py, graded by behaviour.

driver.py copies the learner's conftest.py next to the course's own app.py, pytest.ini and
tests (given and hidden) and runs them once under ``pytest -n 2``: one worker in the usual order,
the other in reverse order. Each check below reads its part of that one report. Nothing here
measures time: what makes a suite slow (an engine or a schema per test) is counted instead, so
the verdict does not depend on how busy the machine is.
"""

from __future__ import annotations

from course.grading.checking import expect, nothing_left_running, require

MODULE = "04_async_testing"
WHAT = "your conftest.py with the course's tests"
DRIVER_TIMEOUT = 58  # the driver's own limit is 55 s: pytest -n 2, and the passes again alone if needed

VISIBLE = "test_bookmarks"
ALONE = ("test_alone_in_the_database", "test_alone_in_another_table")  # suite/hidden_tests.py
ROLLBACK_INSIDE = "test_rollback_inside_a_test"
BURST = "test_burst_of_requests"
FIRST = "test_schema_without_the_client"  # suite/first_test.py: the first test of the session
ASYNC_FIXTURE_ERRORS = ("requested an async fixture", "async def functions are not natively supported")
MAX_CONNECTIONS = 8  # connections your engines may open in one pytest session: one pool, not one per test
SESSIONS = "every pytest session finishes and reports what your fixtures did"
# What plugins/course04_probe.py notes the event loop of, as the learner reads it.
LOOP_USERS = {"the app's lifespan": "the app's lifespan (where the app makes its engine)",
              "an engine's connections": "new database connections", "the tests": "the tests"}


def _run(report: dict, name: str) -> dict:
    return require(report, "runs", expected="pytest runs with your conftest.py")[name]


def _describe(run: dict, tests: list[dict] | None = None) -> str:
    """What went wrong in a run, in a few lines a learner can act on."""
    if run["timed_out"]:
        return f"pytest was still running after {run['seconds']:.0f} s and was stopped. Last lines:\n{run['output_tail']}"
    tests = run["tests"] if tests is None else tests
    if not run["tests"]:
        return f"pytest ran no tests (exit code {run['returncode']}). Its last lines:\n{run['output_tail']}"
    bad = _bad(tests)
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


def _named(tests: list[dict], *names: str) -> list[dict]:
    """The tests called one of ``names`` (whatever their parameters)."""
    return [t for t in tests if t["name"].split("[")[0] in names]


def _where(session: dict) -> str:
    worker = f", worker {session['worker']}" if session["worker"] != "master" else ""
    return f"pytest ({session['ran']} tests{worker})"


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
    alone = _named(run["tests"], *ALONE)
    expect(alone and not _bad(alone),
           called=f"{len(alone) or 'the'} hidden tests that each expect to be alone: they POST the same bookmark, "
                  "or commit a row to a table the given tests never touch",
           expected="every one of them passes",
           got=_describe(run, alone) if alone else _describe(run),
           hint="run each test inside a transaction on one connection and roll it back at the end (a DELETE of the "
                "tables you know leaves the others full); give the app sessions bound to that connection with "
                "join_transaction_mode='create_savepoint'. On SQLite add the driver recipe (isolation_level = None "
                "and emit BEGIN yourself), or the savepoint commits for real.", todo=2)


def test_rollback_inside_a_test(report: dict) -> None:
    """A test that rolls back its own session keeps the test's transaction"""
    run = _run(report, "normal")
    tests = _named(run["tests"], ROLLBACK_INSIDE)
    expect(tests and not _bad(tests),
           called="hidden tests that commit a bookmark with `session`, hit an IntegrityError, call "
                  "session.rollback(), then POST another bookmark and list them",
           expected="the bookmark from before the rollback is still listed, and nothing is left for the next test",
           got=_describe(run, tests) if tests else _describe(run),
           hint="bind the session fixture's sessions, not only the app's, with "
                "join_transaction_mode='create_savepoint': without it a session's rollback() ends the test's own "
                "transaction, and everything after it commits for real.", todo=2)


def test_schema_without_the_client(report: dict) -> None:
    """A test that asks only for the session fixture finds the schema"""
    run = _run(report, "normal")
    first = _named(run["tests"], FIRST)
    expect(first and not _bad(first),
           called=f"{FIRST}(session), the first test of the session: it counts the bookmarks and never asks "
                  "for the client, so the app has not started",
           expected="0 bookmarks",
           got=_describe(run, first) if first else _describe(run),
           hint="create the schema in your own session-scoped fixture (the engine's): the app's lifespan creates "
                "it too, but only once a test has asked for the client.", todo=2)


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
    records = require(report, "records")
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
           called="pytest -n 2 (pytest-xdist: two worker processes at once, one in order, one in reverse order)",
           expected="the same tests pass",
           got=_describe(run),
           hint="two processes share nothing in memory, but they do share files: give each worker its own "
                "database (the worker_id fixture: 'gw0', 'gw1', ...).", todo=3)


def test_database_per_worker(report: dict) -> None:
    """Each xdist worker has its own database"""
    workers = require(report, "workers", expected="both xdist workers finish and report the files they used")
    files = {worker: set(paths) for worker, paths in workers.items()}
    shared = set.intersection(*files.values())
    expect(not shared,
           called="pytest -n 2, noting every database file each worker's engines connect to",
           expected="gw0 and gw1 use different database files",
           got=f"{' and '.join(sorted(files))} both used {sorted(shared)[0]}" if shared else "",
           hint="build the database path from the worker_id fixture (or tmp_path_factory, which is per worker).", todo=3)


def test_one_event_loop(report: dict) -> None:
    """Your fixtures, the app and the tests share one event loop, through a burst of requests"""
    run = _run(report, "normal")
    burst = _named(run["tests"] + _run(report, "reversed")["tests"], BURST)
    expect(burst and not _bad(burst),
           called=f"{BURST}: GET /health many times at once through your client, more than the app's pool holds "
                  "(so some wait for a connection); in the reversed order more tests follow it",
           expected="every one answered 200",
           got=_describe(run, burst) if burst else _describe(run),
           hint="read the error: 'bound to a different event loop' means the app's pool was used from two loops.")
    for session in require(report, "sessions", expected=SESSIONS):
        loops = {what: dict(map(tuple, seen)) for what, seen in session["loops"].items()}
        tests = loops.get("the tests", {})
        off = {what: {n: times for n, times in seen.items() if n not in tests} for what, seen in loops.items()}
        off = {what: seen for what, seen in off.items() if seen}
        expect(len(tests) == 1 and not off,
               called=f"{_where(session)}, noting the event loop each async fixture of your conftest.py, each test, "
                      "the app's lifespan and each new database connection runs on",
               expected="one loop for all of them: pytest.ini gives every fixture and test the session's loop",
               got=lambda: _loops_apart(tests, off),
               hint=_loop_hint(off))


def _loops_apart(tests: dict, off: dict) -> str:
    """What ran on a loop other than the tests', as the learner reads it (fixtures first)."""
    parts = [f"the tests ran on {len(tests)} different loops"] if len(tests) != 1 else []
    order = ["fixture", *LOOP_USERS]
    for what in sorted(off, key=lambda w: order.index(w if w in LOOP_USERS else "fixture")):
        name = LOOP_USERS.get(what) or f"fixture `{what.removeprefix('fixture ')}`"
        times, loops = sum(off[what].values()), len(off[what])
        parts.append(f"{name}: " + ("once" if times == 1 else f"{times} times") + ", on "
                     + ("a loop" if loops == 1 else f"{loops} loops") + " other than the tests' one")
    return "; ".join(parts)


def _loop_hint(off: dict) -> str:
    if any(what.startswith("fixture ") for what in off):
        return ("remove loop_scope='function' (or whatever starts a loop of its own) from the fixture: it hands the "
                "tests objects made on another loop. aiosqlite lets that pass; asyncpg fails with 'attached to a "
                "different loop' (notebook 04, sections 3 and 4).")
    if "the app's lifespan" in off:
        return ("enter the lifespan in an async session fixture (LifespanManager(app)): TestClient, or anything that "
                "starts the app in a thread, runs it on a loop of its own, and the app's engine belongs to that loop.")
    return ("an engine's first connection was opened on a loop the tests do not use (asyncio.run() in a sync "
            "fixture?): create and first use every engine in an async fixture, on the tests' loop.")


def test_connections_closed(report: dict) -> None:
    """Every engine is disposed: no database connection is left open at the end"""
    for session in require(report, "sessions", expected=SESSIONS):
        leaked = session["opened"] - session["closed"]
        expect(leaked <= 0,
               called=f"{_where(session)}, counting connections opened and closed by every pool",
               expected="as many closed as opened once the session's fixtures are torn down",
               got=f"{session['opened']} opened, {session['closed']} closed: {leaked} left open "
                   f"({session['open_db_files']} database files still open, "
                   f"{session['driver_threads']} driver threads alive)",
               hint="an engine you create in a fixture must be disposed in the same fixture: "
                    "yield it, then await engine.dispose() (in a finally).", todo=2)


def test_schema_created_once(report: dict) -> None:
    """The schema is created once per session, not once per test"""
    for session in require(report, "sessions", expected=SESSIONS):
        tables = session["schema_tables"]
        expect(session["create_table"] <= 2 * tables,
               called=f"{_where(session)}, counting CREATE TABLE statements",
               expected=f"at most {2 * tables} (the app has {tables} tables under the checks)",
               got=f"{session['create_table']} CREATE TABLE statements",
               hint="create the schema in a session-scoped fixture and isolate tests with a rollback, "
                    "not with a fresh database per test.", todo=2)


def test_app_lifespan_runs_once(report: dict) -> None:
    """The app's own lifespan runs, once per session (not state set by hand, not once per test)"""
    for session in require(report, "sessions", expected=SESSIONS):
        started = session["lifespan_started"]
        expect(started == 1,
               called=f"{_where(session)}, counting how often app.router.lifespan_context is entered",
               expected="exactly once: a session-scoped fixture enters the app's lifespan and every test shares it",
               got=f"{started} times" + (": the app's state was set some other way (by hand?), so the app's own "
                                         "startup code never ran in your tests" if started == 0 else
                                         ": a lifespan (and an engine) per test" if started > 1 else ""),
               hint="enter the lifespan the app defines (LifespanManager(app) or app.router.lifespan_context(app)) in "
                    "a session-scoped fixture; setting app.state yourself tests a startup the app never does.", todo=1)


def test_overrides_removed(report: dict) -> None:
    """Your fixtures leave app.dependency_overrides as they found it"""
    for session in require(report, "sessions", expected=SESSIONS):
        left = session["overrides_left"]
        expect(not left, called="app.dependency_overrides after the last test and every fixture's teardown",
               expected="empty: each fixture removes the override it set",
               got=f"still set: {', '.join(left)}",
               hint="an override stays on the app, which lives for the whole session; remove exactly the key you "
                    "set (pop(get_session, None)) in the fixture that set it, in a finally.", todo=1)


def test_one_engine_for_the_session(report: dict) -> None:
    """Your suite opens one engine for the session, not one per test (that is what keeps it fast)"""
    for session in require(report, "sessions", expected=SESSIONS):
        yours, ran = session["opened"] - session["app_opened"], session["ran"]
        expect(yours <= MAX_CONNECTIONS,
               called=f"{_where(session)}, counting the database connections your engines open (the app's own "
                      "engine aside)",
               expected=f"at most {MAX_CONNECTIONS}: one engine for the session, its connections reused by every test",
               got=f"{yours} connections opened for {ran} tests"
                   + (" (about one per test: a new engine, or a new pool, per test)" if yours >= ran else ""),
               hint=f"an engine per test pays for a connection (and here a schema of {session['schema_tables']} "
                    "tables) every time; a session-scoped engine and a rolled-back transaction per test pay once.",
               todo=2)


def test_nothing_left_running(report: dict) -> None:
    """Nothing your fixtures started is still running after the tests"""
    nothing_left_running(report)
