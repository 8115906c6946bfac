"""Checks for exercise 01: database lifecycle.

The learner's app runs once, in a subprocess, under a real uvicorn server (driver.py); each
test below reads one part of what happened and names one expectation.
"""

from __future__ import annotations

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "01_database_lifecycle"
WHAT = "importing app.py and serving it under uvicorn"
DRIVER_TIMEOUT = 60


def server_errors(logged: dict) -> str:
    return "; ".join(f"{text}" + (f" x{n}" if n > 1 else "") for text, n in logged.items()) or "none"


def test_app_runs(report: dict) -> None:
    """app.py imports, starts and answers GET /items/1"""
    require(report, "single")
    single = report["single"]
    expect(single["status"] == 200, called="GET /items/1 (a single request)", expected="200 with the item and its quote",
           got=answer(single),
           hint="read the server's error; the table is 'items' (id, name, price_cents).")
    expect('"shipping_cents"' in single["body"], called="GET /items/1", expected="a body with shipping_cents",
           got=single["body"], hint="keep the response model Quote as it is.")


def test_slow_call_still_made(report: dict) -> None:
    """The shipping quote is still fetched (the slow call is not skipped)"""
    require(report, "single")
    single, slow = report["single"], report["slow"]
    expect(single["status"] == 200, called="GET /items/1", expected="200 (then its time is measured)",
           got=answer(single), hint="see the first expectation: the request itself fails.")
    seconds = single["seconds"]
    expect(seconds >= 0.9 * slow, called=f"GET /items/1 with the partner taking {slow} s",
           expected=f"at least {slow} s (the quote call happens on every request)", got=f"{seconds:.3f} s",
           hint="make the connection free during the quote call; don't remove the call.")


def test_missing_item_is_404(report: dict) -> None:
    """A missing item is a 404, not a 500"""
    require(report, "missing")
    missing = report["missing"]
    expect(missing["status"] == 404, called="GET /items/999", expected="404 with a detail",
           got=answer(missing), hint="raise HTTPException(status_code=404, ...)")


def test_no_engine_at_import(report: dict) -> None:
    """No engine is created when app.py is imported"""
    require(report, "engines_at_import")
    made = report["engines_at_import"]
    expect(not made, called="import app", expected="no engine yet: it belongs to the running app (lifespan)",
           got=f"{len(made)} engine(s) created at import: " + "; ".join(e["where"] for e in made),
           hint="an engine made at import outlives every server that uses it; give it the app's lifetime.", todo=1)


def test_sessions_closed_after_failed_requests(report: dict) -> None:
    """Every session is closed after its request, also when the request fails"""
    require(report, "after_errors", "after_errors_ok")
    leaked = [e["checked_out"] for e in report["after_errors"]]
    statuses = [e["status"] for e in report["after_errors"]]
    expect(max(leaked, default=0) == 0 and statuses == [404, 404, 404],
           called="GET /items/998 three times in a row (404 each), checking the pool after each",
           expected="404, 404, 404 with 0 connections checked out after each",
           got=f"statuses {statuses}, connections still checked out after each: {leaked}",
           hint="a dependency that returns its session cannot close it; one that yields gets control back "
                "after the request, also when the endpoint raised.", todo=2)
    ok = report["after_errors_ok"]
    expect(ok["status"] == 200, called="GET /items/2 after the three 404s", expected="200",
           got=answer(ok), hint="the pool is empty: sessions from earlier requests were not closed.", todo=2)


def test_no_errors_under_load(report: dict) -> None:
    """20 concurrent requests all succeed with a pool of 2"""
    burst, errors = require(report, "burst", "burst_server_errors")
    expect(burst["ok"] == burst["n"], called=f"{burst['n']} concurrent GET /items/3 (partner takes {report['slow']} s)",
           expected=f"{burst['n']} x 200",
           got=f"{burst['ok']} x 200, statuses {burst['statuses']}; the server raised: {server_errors(errors)}",
           hint="a session that holds its connection during the slow call keeps the pool busy; when does a "
                "session give its connection back?", todo=3)


def test_connection_free_during_slow_call(report: dict) -> None:
    """No request holds a database connection while it waits for the slow partner"""
    burst, calls = require(report, "burst", "slow_calls")
    slow = report["slow"]
    expect(calls["calls"] > 0 and calls["holding"] == 0,
           called=f"GET /items/1, /items/2 and {burst['n']} concurrent GET /items/3, watching the pool while "
                  f"quote_shipping() runs ({slow} s each)",
           expected="0 calls to quote_shipping() made while the request holds a pooled connection",
           got=(f"{calls['holding']} of {calls['calls']} calls held a connection the whole time; under the burst: "
                f"p50 {burst['p50']:.2f} s, max {burst['max']:.2f} s" if calls["calls"] else
                "quote_shipping() was never called (the requests failed before it)"),
           hint="a longer pool_timeout turns errors into waiting: the requests queue for the 2 connections. "
                "Fix the cause: the connection goes back to the pool when the session's transaction ends or the "
                "session closes.", todo=3)


def test_pool_budget_respected(report: dict) -> None:
    """The app never opens more than the 2 connections the database allows"""
    require(report, "burst")
    peak = report.get("peak_open_all_engines", 0)
    expect(peak <= 2, called="the whole run, counting connections opened and closed",
           expected="at most 2 connections open at once (pool_size=2, max_overflow=0)",
           got=f"{peak} open at once across {len(report['engines'])} engine(s)",
           hint="keep POOL_SETTINGS and one engine per app; fix the session scope instead of growing the pool.", todo=3)


def test_concurrent_sessions_are_isolated(report: dict) -> None:
    """Two sessions open at once each have their own connection"""
    iso = require(report, "isolation")
    writer, reader = iso["writer"], iso["reader"]
    called = ("two requests at once, each with one session from get_session: A updates item 3 without committing "
              "and waits; B, meanwhile, reads item 3")
    expect(writer["status"] == 200 and reader["status"] == 200, called=called,
           expected="200 for both: each request can use its session while the other one's is open",
           got=f"A: {answer(writer)}\nB: {answer(reader)}",
           hint="get_session must hand out a session from the app's sessionmaker to every request.", todo=2)
    expect(iso["distinct_connections"] and iso["reader_read"] and iso["seen"] != "uncommitted", called=called,
           expected="two different connections; B reads while A's transaction is open and does not see A's "
                    "uncommitted change",
           got="B could not read while A's transaction was open (they wait for one connection)"
               if not iso["reader_read"] else
               f"same connection: {not iso['distinct_connections']}; B read the name {iso['seen']!r}"
               + (" (A's uncommitted write)" if iso["seen"] == "uncommitted" else ""),
           hint="a connection or session shared by requests mixes their transactions: one for the app (it keeps "
                "the count low), or one per thread (one thread runs every request of the event loop). Keep the pool "
                "(POOL_SETTINGS) and a session per request (per task).", todo=3)


def test_connections_closed_on_shutdown(report: dict) -> None:
    """After shutdown, no database connection is left open"""
    engines, files = require(report, "engines", "open_files_after_shutdown")
    still_open = sum(e["open"] for e in engines)
    expect(still_open == 0 and files == 0, called="stopping the server (its lifespan shutdown runs)",
           expected="0 connections open, 0 handles on the database file",
           got=f"{still_open} connection(s) open, {files} handle(s) on the database file",
           hint="who closes the pool's connections when the app stops? (also when startup or a request failed)", todo=1)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
