"""Checks for module 02 (dependency injection). Run with: course check 02

The learner's code runs once, in driver.py (a subprocess with a timeout); each test reads its
part of the driver's report. Nothing here reads the learner's source: the driver counts the
Settings and httpx clients the code builds, the TCP connections the upstream sees, the database
connections checked out and returned, and it runs the learner's fixture under a real pytest.
"""

from collections import Counter
from pathlib import Path

import pytest

from course.checking import expect, run_driver

MODULE = "02_dependency_injection"
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def report(target: Path) -> dict:
    return run_driver(HERE / "driver.py", str(target), timeout=45, what="your app.py and conftest.py")


def app_ran(report: dict, part: str) -> dict:
    """The report's ``part``, or a clear failure saying why the app could not be exercised."""
    if "import_error" in report:
        expect(False, called="import app (your app.py)", expected="app.py imports without errors",
               got=report["import_error"].strip().splitlines()[-1],
               hint="run `python -c \"import app\"` in your exercise folder and read the first error.")
    expect(not report.get("app_error"), called="app.app", expected="a FastAPI object named app in app.py",
           got=str(report.get("app_error")), hint="keep `app = FastAPI(lifespan=lifespan)` at module level.")
    expect(not report.get("missing"), called="app.py",
           expected="it defines Settings, get_settings, get_client, get_session and app (the README's names)",
           got=f"missing: {', '.join(report.get('missing') or [])}",
           hint="the checks and your tests find these by name: keep them.")
    expect("startup_error" not in report, called="uvicorn app:app (the lifespan's startup)",
           expected="the app starts", got=str(report.get("startup_error")),
           hint="run `uvicorn app:app` in your folder: the lifespan must reach its yield without an error.")
    expect(part in report, called="your app, while the checks sent requests",
           expected="it answers every request",
           got=str(report.get("driver_error", f"the checks stopped before '{part}'")).strip()[-600:],
           hint="run the app with uvicorn and try the requests in the README by hand.")
    return report[part]


def served(report: dict) -> dict:
    """The ordinary requests must work before the counts mean anything."""
    req = app_ran(report, "requests")
    prices, orders = req["prices"], req["orders"]
    expect(prices["ok"] == prices["n"] and orders["ok"] == orders["n"],
           called=f"{prices['n']} x GET /prices/ACME and {orders['n']} x POST /orders {{'symbol': 'ACME', 'quantity': 2}}",
           expected="every request succeeds (200 and 201)",
           got=f"GET statuses {prices['statuses']}, POST statuses {orders['statuses']}; "
               f"errors: {prices['errors'] or orders['errors'] or req['errors']}",
           hint="start the app with uvicorn and try these requests by hand; the server log shows the exception.")
    return req


def answer(result: list) -> str:
    """``[status, body, logged]`` as the learner should read it."""
    status, body, logged = result
    return f"{status} {body}" + (f" (the server logged: {logged})" if status >= 500 and logged else "")


def fixture_problems(report: dict, test: str) -> list[tuple[list[str], dict]]:
    """(order, problem) for every problem the course test ``test`` had, over both runs."""
    runs = report.get("fixture_runs") or []
    expect(runs, called="python -m pytest (your conftest.py with the course's tests)",
           expected="the tests run", got="they did not run", hint="is conftest.py in your exercise folder?")
    found = []
    for run in runs:
        if test not in run["outcomes"]:  # collection failed: the log says why
            lines = [ln for ln in run["log"].splitlines() if ln.startswith("E ") or "Error" in ln]
            found.append((run["order"], {"kind": "error", "message": " / ".join(lines[-3:]) or run["log"][-400:]}))
        for problem in run["outcomes"].get(test, []):
            if "fixture 'fake_upstream' not found" in problem["message"]:
                problem = {**problem, "message": "pytest: fixture 'fake_upstream' not found "
                                                 "(it belongs in conftest.py, next to app.py)"}
            found.append((run["order"], problem))
    return found


PYTEST_CALL = "python -m pytest (your conftest.py + the course's test file, in two orders)"


# --- the app ----------------------------------------------------------------------------------

def test_app_runs(report: dict) -> None:
    """app.py imports, starts and answers ordinary requests"""
    served(report)
    listing = report["requests"]["listing"]
    n = report["requests"]["orders"]["n"]
    expect(listing[0] == 200 and f'"count":{n}' in listing[1].replace(" ", ""), called="GET /orders",
           expected=f"200 with count {n} (the orders just placed)", got=f"{listing[0]} {listing[1]}",
           hint="keep list_orders as it is.")


# --- settings ---------------------------------------------------------------------------------

def test_import_has_no_side_effects(report: dict) -> None:
    """Importing app.py builds no settings object and no HTTP client"""
    app_ran(report, "import")
    imp = report["import"]
    expect(imp["settings"] == 0 and imp["clients"] == 0, called="import app",
           expected="no Settings() and no httpx.AsyncClient() at import time",
           got=f"{imp['settings']} Settings object(s) and {imp['clients']} httpx.AsyncClient(s) built while importing app.py",
           hint="module-level objects are fixed before a test can change anything, and nobody closes them: "
                "read settings through a cached get_settings(), create the client in lifespan.")


def test_settings_parsed_once(report: dict) -> None:
    """Settings are read once, not on every request"""
    req = served(report)
    n = req["prices"]["n"] + req["orders"]["n"]
    expect(req["settings"] <= 1, called=f"{n} requests to the running app",
           expected="Settings built at most once while serving",
           got=f"Settings built {req['settings']} times while serving {n} requests",
           hint="get_settings builds a new Settings() on every call: decorate it with @functools.lru_cache.")


def test_endpoints_use_get_settings(report: dict) -> None:
    """Endpoints take settings from Depends(get_settings), so a test can override them"""
    served(report)
    ov = app_ran(report, "override")
    expect("error" not in ov, called="Settings(max_quantity=1)", expected="Settings accepts max_quantity",
           got=str(ov.get("error", "")).strip()[-400:], hint="keep the Settings fields the README lists.")
    status = ov["overridden"][0]
    expect(status == 422,
           called="app.dependency_overrides[get_settings] = lambda: Settings(max_quantity=1); "
                  "POST /orders {'symbol': 'ACME', 'quantity': 2}",
           expected="422: the overridden settings (max_quantity=1) apply",
           got=answer(ov["overridden"]),
           hint="place_order must receive its settings as a parameter, "
                "`settings: Annotated[Settings, Depends(get_settings)]`, not read a module-level object."
           if status != 500 else "the request failed with a 500: read what the server logged.")
    expect(ov["normal"][0] == 201, called="the same request after app.dependency_overrides.pop(get_settings)",
           expected="201 again (SHOP_MAX_QUANTITY is 50)", got=answer(ov["normal"]))


def test_get_settings_cache_clear(report: dict) -> None:
    """get_settings.cache_clear() makes the next call read the environment again"""
    app_ran(report, "cache_clear")
    cc = report["cache_clear"]
    expect(cc["ok"], called="get_settings.cache_clear()", expected="get_settings has cache_clear() (functools.lru_cache)",
           got=str(cc.get("error", "")).strip()[-400:],
           hint="cache with @functools.lru_cache rather than a global variable or dict: "
                "tests reset it with get_settings.cache_clear().")
    expect(cc["fresh"] == 7, called="SHOP_MAX_QUANTITY=7; get_settings.cache_clear(); get_settings().max_quantity",
           expected="7", got=str(cc["fresh"]),
           hint="Settings must read max_quantity from the environment variable SHOP_MAX_QUANTITY "
                "(model_config = SettingsConfigDict(env_prefix='SHOP_')).")


# --- the HTTP client ----------------------------------------------------------------------------

def test_one_client_for_all_requests(report: dict) -> None:
    """One HTTP client, created at startup, serves every request"""
    req = served(report)
    n = req["prices"]["n"] + req["orders"]["n"]
    expect(req["clients"] == 0 and req["upstream_connections"] <= 10,
           called=f"{n} requests to the running app ({req['prices']['concurrency']} at a time)",
           expected="no httpx.AsyncClient built while serving, and at most 10 TCP connections to the upstream "
                    "(the lifespan's client reuses its pooled connections)",
           got=f"{req['clients']} httpx.AsyncClient(s) built while serving; "
               f"the upstream accepted {req['upstream_connections']} TCP connections",
           hint="create one client in lifespan (app.state.client) and return it from get_client(request); "
                "a client per request pays for a new SSL context and a new connection every time.")


def test_client_closed_on_shutdown(report: dict) -> None:
    """The HTTP client is closed when the app shuts down"""
    served(report)
    sd = app_ran(report, "shutdown")
    expect("shutdown_error" not in report, called="stop the app (lifespan shutdown)", expected="it stops within 3 s",
           got=str(report.get("shutdown_error")), hint="the code after the lifespan's yield must finish quickly.")
    still_open = [c for c in sd["clients"] if not c["closed"]]
    where = Counter(c["phase"] for c in still_open)
    expect(not still_open and sd["established_to_upstream"] == 0, called="stop the app (lifespan shutdown)",
           expected="every httpx.AsyncClient the app built is closed, and no TCP connection to the upstream is left",
           got=f"{len(still_open)} of {len(sd['clients'])} client(s) still open "
               f"(built during {', '.join(f'{phase} x{n}' for phase, n in where.items()) or '-'}); "
               f"{sd['established_to_upstream']} connection(s) to the upstream still established",
           hint="wrap the lifespan's yield in `async with httpx.AsyncClient(...) as client:` "
                "(or call `await client.aclose()` after the yield).")


# --- the session --------------------------------------------------------------------------------

def test_sessions_closed_after_requests(report: dict) -> None:
    """Every database session is closed after its request"""
    req = served(report)
    expect(req["held"] == 0, called=f"{req['orders']['n']} x POST /orders, then GET /orders",
           expected="every connection taken from the pool is back once the responses are sent",
           got=f"{req['held']} of {req['checkouts']} connection(s) still checked out after the requests",
           hint="get_session must yield the session and close it afterwards: "
                "`async with request.app.state.sessionmaker() as session: yield session`. "
                "A dependency that returns a session has nobody to close it.")


def test_session_cleaned_up_on_error(report: dict) -> None:
    """When the endpoint fails, the session is rolled back and closed"""
    served(report)
    ep = app_ran(report, "error_path")
    called = "POST /orders {'symbol': 'DOWN', 'quantity': 1} (the upstream answers 503 after the order row was written)"
    expect(ep["status"] == 502, called=called, expected="502 (the upstream failed), never a 500",
           got=answer([ep["status"], ep["body"], "; ".join(ep["new_errors"])]),
           hint="keep fetch_price as it is: it turns upstream failures into HTTPException(502).")
    errors = "; ".join(ep["new_errors"]) or "no server error"
    expect(ep["held"] == 0, called=called,
           expected="the session is closed after the error response: its connection is back in the pool",
           got=f"{ep['held']} connection(s) still checked out after the 502; the next order answered "
               f"{ep['next_status']} after {ep['next_seconds']} s ({errors})",
           hint="the endpoint's exception is thrown into get_session at its `yield`, so lines after the yield "
                "do not run: put the cleanup in `finally`, or yield inside `async with sessionmaker() as session:`.")
    stored = None if ep["stored_after"] is None or ep["stored_before"] is None else ep["stored_after"] - ep["stored_before"]
    expect(ep["next_status"] == 201 and stored == 1, called=called + ", then POST /orders ACME and GET /orders",
           expected="the failed order is not stored (rolled back) and the next order is (201)",
           got=f"the next order answered {ep['next_status']} {ep['next_body']}; orders stored in between: {stored}",
           hint="do not commit in the dependency when the endpoint raised; closing the session rolls back.")


def test_bad_input_gets_4xx(report: dict) -> None:
    """Bad input gets a clear 4xx, never a 500"""
    served(report)
    bad = app_ran(report, "bad_input")
    wanted = {label: (404 if "NOPE" in label else 422) for label in bad}
    wrong = {label: got for label, got in bad.items() if got[0] != wanted[label]}
    first = next(iter(wrong), None)
    expect(not wrong, called=first or "bad requests",
           expected=f"{wanted.get(first)}" if first else "4xx",
           got=answer(wrong[first]) + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "") if first else "",
           hint="validate with the OrderIn model and HTTPException(422 / 404); the starter's endpoints already do.")


# --- the test fixture -----------------------------------------------------------------------------

def test_fixture_overrides_get_client(report: dict) -> None:
    """The fake_upstream fixture replaces get_client during a test"""
    problems = [(order, p) for order, p in fixture_problems(report, "test_fake_upstream_answers")
                if "still open" not in p["message"]]
    order, problem = problems[0] if problems else (None, None)
    expect(not problems, called=PYTEST_CALL + ": a test using fake_upstream calls GET /prices/ACME",
           expected="200 with price 42.0, answered by the fake (no lifespan runs in this test)",
           got=problem["message"] if problem else "",
           hint="fake_upstream must set app.dependency_overrides[get_client] to a dependency that yields a client "
                "on httpx.MockTransport(fake_prices), and the endpoints must take their client from "
                "Depends(get_client): an override changes nothing for code that reads a global.")


def test_fixture_removes_its_override(report: dict) -> None:
    """fake_upstream removes its override after the test, so the suite passes in any order"""
    problems = fixture_problems(report, "test_no_override_left_behind")
    order, problem = problems[0] if problems else (None, None)
    expect(not problems, called=PYTEST_CALL + (f": {' then '.join(order)}" if order else ""),
           expected="no dependency override left once a test using fake_upstream is over",
           got=problem["message"] if problem else "",
           hint="after the fixture's `yield`, remove the override: app.dependency_overrides.pop(get_client).")


def test_fixture_keeps_other_overrides(report: dict) -> None:
    """fake_upstream removes only its own override (pop, not clear)"""
    problems = fixture_problems(report, "test_other_overrides_survive")
    order, problem = problems[0] if problems else (None, None)
    expect(not problems, called=PYTEST_CALL + ": another fixture overrides get_settings, then fake_upstream runs",
           expected="the get_settings override is still there after fake_upstream's teardown",
           got=problem["message"] if problem else "",
           hint="app.dependency_overrides.clear() removes every fixture's overrides: pop only get_client.")


def test_fixture_closes_fake_client(report: dict) -> None:
    """The fake client is closed after the test"""
    problems = [(order, p) for order, p in fixture_problems(report, "test_fake_upstream_answers")
                if "still open" in p["message"]]
    order, problem = problems[0] if problems else (None, None)
    expect(not problems, called=PYTEST_CALL + ": a test using fake_upstream",
           expected="every httpx.AsyncClient the fixture built is closed when the test is over",
           got=problem["message"] if problem else "",
           hint="write the override as a yield dependency: "
                "`async with httpx.AsyncClient(transport=...) as client: yield client`.")
