"""Checks for exercise 01: database lifecycle.

The learner's app runs once, in a subprocess, under a real uvicorn server (driver.py); each
test below reads one part of what happened and names one expectation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course.checking import expect, run_driver

MODULE = "01_database_lifecycle"
DRIVER = Path(__file__).with_name("driver.py")
LATENCY_BUDGET = 1.0  # seconds above the slow call that the slowest request may take under the burst


@pytest.fixture(scope="module")
def run(target: Path) -> dict:
    expect((target / "app.py").is_file(), expected="an app.py in the folder you grade", got=f"no app.py in {target}",
           hint="grade the exercise folder: course check 01")
    return run_driver(DRIVER, str(target), timeout=45, what="importing app.py and serving it under uvicorn")


def needs(run: dict, *keys: str) -> None:
    """Fail clearly when the driver stopped before reaching the part a test needs."""
    missing = [k for k in keys if k not in run]
    if missing:
        expect(False, called=f"app.py, during {run.get('crash_phase', run.get('phase'))}",
               expected="the app imports, starts, answers requests and shuts down",
               got=f"it stopped with {run.get('crash', 'an unknown error')}",
               hint="start it yourself: uvicorn app:app --app-dir exercises/01_database_lifecycle")


def test_app_runs(run: dict) -> None:
    """app.py imports, starts and answers GET /items/1"""
    needs(run, "single")
    single = run["single"]
    expect(single["status"] == 200, called="GET /items/1 (a single request)", expected="200 with the item and its quote",
           got=f"{single['status']}: {single['body']}",
           hint="read the server's error; the table is 'items' (id, name, price_cents).")
    expect('"shipping_cents"' in single["body"], called="GET /items/1", expected="a body with shipping_cents",
           got=single["body"], hint="keep the response model Quote as it is.")


def test_slow_call_still_made(run: dict) -> None:
    """The shipping quote is still fetched (the slow call is not skipped)"""
    needs(run, "single")
    seconds, slow = run["single"]["seconds"], run["slow"]
    expect(seconds >= 0.9 * slow, called=f"GET /items/1 with the partner taking {slow} s",
           expected=f"at least {slow} s (the quote call happens on every request)", got=f"{seconds:.3f} s",
           hint="make the connection free during the quote call; don't remove the call.")


def test_missing_item_is_404(run: dict) -> None:
    """A missing item is a 404, not a 500"""
    needs(run, "missing")
    missing = run["missing"]
    expect(missing["status"] == 404, called="GET /items/999", expected="404 with a detail",
           got=f"{missing['status']}: {missing['body']}", hint="raise HTTPException(status_code=404, ...)")


def test_no_engine_at_import(run: dict) -> None:
    """No engine is created when app.py is imported"""
    needs(run, "engines_at_import")
    made = run["engines_at_import"]
    expect(not made, called="import app", expected="no engine yet: it belongs to the running app (lifespan)",
           got=f"{len(made)} engine(s) created at import: " + "; ".join(e["where"] for e in made),
           hint="create the engine inside an @asynccontextmanager lifespan and keep it on app.state.")


def test_sessions_closed_after_failed_requests(run: dict) -> None:
    """Every session is closed after its request, also when the request fails"""
    needs(run, "after_errors", "after_errors_ok")
    leaked = [e["checked_out"] for e in run["after_errors"]]
    statuses = [e["status"] for e in run["after_errors"]]
    expect(max(leaked, default=0) == 0 and statuses == [404, 404, 404],
           called="GET /items/998 three times in a row (404 each), checking the pool after each",
           expected="404, 404, 404 with 0 connections checked out after each",
           got=f"statuses {statuses}, connections still checked out after each: {leaked}",
           hint="get_session must `yield` the session inside `async with ...:` so it is closed after the request; "
                "a `return`ed session is never closed when the endpoint raises.")
    ok = run["after_errors_ok"]
    expect(ok["status"] == 200, called="GET /items/2 after the three 404s", expected="200",
           got=f"{ok['status']}: {ok['body']}", hint="the pool is empty: sessions from earlier requests were not closed.")


def test_no_errors_under_load(run: dict) -> None:
    """50 concurrent requests all succeed with a pool of 2"""
    needs(run, "burst")
    burst = run["burst"]
    errors = "; ".join(f"{n} x {t[:140]}" for t, n in run.get("server_errors", {}).items()) or "none logged"
    expect(burst["ok"] == burst["n"], called=f"{burst['n']} concurrent GET /items/3 (partner takes {run['slow']} s)",
           expected=f"{burst['n']} x 200", got=f"{burst['ok']} x 200, statuses {burst['statuses']}; server errors: {errors}",
           hint="a session that holds its connection during the slow call keeps the pool busy; release the "
                "connection (close the session or end its transaction) before awaiting the quote.")


def test_latency_under_load(run: dict) -> None:
    """Under the burst, requests do not wait in a queue for a connection"""
    needs(run, "burst")
    burst, slow = run["burst"], run["slow"]
    budget = slow + LATENCY_BUDGET
    expect(burst["ok"] > 0 and burst["p95"] <= budget,
           called=f"{burst['n']} concurrent GET /items/3 (partner takes {slow} s)",
           expected=f"p95 latency at most {budget:.1f} s (the slow call plus a little)",
           got=f"p50 {burst['p50']:.2f} s, p95 {burst['p95']:.2f} s, max {burst['max']:.2f} s over {burst['ok']} answers",
           hint="a longer pool_timeout turns errors into waiting: the requests queue for the 2 connections. "
                "Fix the cause: hold the connection only while you use the database.")


def test_pool_budget_respected(run: dict) -> None:
    """The app never opens more than the 2 connections the database allows"""
    needs(run, "burst")
    peak = run.get("peak_open_all_engines", 0)
    expect(peak <= 2, called="the whole run, counting connections opened and closed",
           expected="at most 2 connections open at once (pool_size=2, max_overflow=0)",
           got=f"{peak} open at once across {len(run['engines'])} engine(s)",
           hint="keep POOL_SETTINGS and one engine per app; fix the session scope instead of growing the pool.")


def test_connections_closed_on_shutdown(run: dict) -> None:
    """After shutdown, no database connection is left open"""
    needs(run, "stopped_cleanly")
    still_open = sum(e["open"] for e in run["engines"])
    files = run["open_files_after_shutdown"]
    expect(still_open == 0 and files == 0, called="stopping the server (its lifespan shutdown runs)",
           expected="0 connections open, 0 handles on the database file",
           got=f"{still_open} connection(s) open, {files} handle(s) on the database file",
           hint="after the lifespan's `yield`, `await engine.dispose()` (in a finally: block so it also runs on errors).")
