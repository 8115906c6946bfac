"""Checks for exercise 02: dependency injection.

The learner's code runs once, in a subprocess (driver.py): their app under a real uvicorn with a
fake upstream and a SQLite file, their conftest.py under a real pytest with the course's tests
(fixture_tests.py). Each test below reads one part of what happened and names one expectation.
Nothing here reads the learner's source.
"""

from collections import Counter
from pathlib import Path

import pytest

from course.grading.checking import expect, nothing_left_running, require, run_driver

MODULE = "02_dependency_injection"
DRIVER = Path(__file__).with_name("driver.py")
PYTEST_CALL = "pytest with your conftest.py and the course's tests"


@pytest.fixture(scope="module")
def report(target: Path) -> dict:
    return run_driver(DRIVER, target, timeout=50, what="importing app.py, serving it under uvicorn and "
                                                       "running your conftest.py under pytest")


def answer(result: dict) -> str:
    """One request's answer as the learner should read it, with what the server raised meanwhile."""
    if result["status"] is None:
        text = f"no answer ({result.get('transport')})"
    else:
        text = f"{result['status']} {result['body']}"
    if result.get("server_errors"):
        text += f"; the server raised {'; '.join(result['server_errors'])}"
    return text


def server_errors(logged: dict) -> str:
    return "; ".join(f"{n} x {text}" for text, n in logged.items()) or "none logged"


def served(report: dict) -> dict:
    """The ordinary requests, which must work before the counts taken while serving mean anything."""
    req = require(report, "requests")
    prices, orders = req["prices"], req["orders"]
    expect(prices["ok"] == prices["n"] and orders["ok"] == orders["n"],
           called=f"{prices['n']} x GET /prices/ACME ({prices['concurrency']} at a time) and "
                  f"{orders['n']} x POST /orders {{'symbol': 'ACME', 'quantity': 2}}",
           expected="every request succeeds (200 and 201)",
           got=lambda: f"GET statuses {prices['statuses']}, POST statuses {orders['statuses']}; "
                       f"answers: {'; '.join(dict.fromkeys([*prices['errors'], *orders['errors']]))[:300] or '-'}; "
                       f"the server raised: {server_errors(req['server_errors'])}",
           hint="start the app with uvicorn and send these requests by hand; the server's log shows the exception.",
           todo=None)  # the starter answers them: whichever change broke them, the server's error says where
    return req


def fixture_problem(report: dict, test: str) -> tuple[str, str] | None:
    """(the course's tests that ran before ``test``, what went wrong) for the first order of the
    tests in which ``test`` did not pass, or None."""
    for run in require(report, "fixture_runs"):
        before = run["order"][:run["order"].index(test)] if test in run["order"] else []
        order = ", ".join(before) or "nothing"
        outcome = run["tests"].get(test)
        if outcome is None:  # it never ran: collection failed, or the run was stopped
            if run["collect_errors"]:
                return order, "pytest could not collect the tests: " + "; ".join(run["collect_errors"])
            why = "pytest did not finish within 30 s" if run["timed_out"] else "the test did not run"
            return order, f"{why}; pytest's last lines: {run['tail'][-300:]}"
        if outcome["outcome"] != "passed":
            return order, outcome["message"] or outcome["outcome"]
    return None


# --- the app ------------------------------------------------------------------------------------

def test_app_runs(report: dict) -> None:
    """app.py imports, starts and answers ordinary requests"""
    req = served(report)
    listing, n = req["listing"], req["orders"]["n"]
    expect(listing["status"] == 200 and f'"count":{n}' in listing["body"].replace(" ", ""), called="GET /orders",
           expected=f"200 with count {n} (the orders just placed)", got=answer(listing),
           hint="keep list_orders as it is.", todo=None)


# --- settings -------------------------------------------------------------------------------------

def test_import_has_no_side_effects(report: dict) -> None:
    """Importing app.py builds no settings object and no HTTP client"""
    imp = require(report, "import")
    expect(imp["settings"] == 0, called="import app", expected="no Settings() at import time",
           got=f"{imp['settings']} Settings object(s) built while importing app.py",
           hint="a module-level settings object is fixed before a test can change anything: read settings "
                "through a cached get_settings(), called in the lifespan and through Depends.", todo=1)
    expect(imp["clients"] == 0, called="import app", expected="no httpx.AsyncClient() at import time",
           got=f"{imp['clients']} httpx.AsyncClient(s) built while importing app.py",
           hint="nobody closes a client built at import: create it in the lifespan.", todo=2)


def test_settings_parsed_once(report: dict) -> None:
    """Settings are read once, not on every request"""
    req = served(report)
    n = req["prices"]["n"] + req["orders"]["n"]
    expect(req["settings"] <= 1, called=f"{n} requests to the running app",
           expected="Settings built at most once while serving",
           got=f"Settings built {req['settings']} times while serving {n} requests",
           hint="get_settings builds a new Settings() on every call: decorate it with @functools.lru_cache.", todo=1)


def test_endpoints_use_get_settings(report: dict) -> None:
    """Endpoints take settings from Depends(get_settings), so a test can override them"""
    ov = require(report, "override")
    expect("error" not in ov, called="Settings(max_quantity=1)", expected="Settings accepts max_quantity",
           got=lambda: ov["error"], hint="keep the Settings fields the README lists.", todo=1)
    status = ov["overridden"]["status"]
    expect(status == 422,
           called="app.dependency_overrides[get_settings] = lambda: Settings(max_quantity=1); "
                  "POST /orders {'symbol': 'ACME', 'quantity': 2}",
           expected="422: the overridden settings (max_quantity=1) apply",
           got=answer(ov["overridden"]),
           hint="place_order must receive its settings as a parameter, "
                "`settings: Annotated[Settings, Depends(get_settings)]`, not read a module-level object."
           if status != 500 else "the request failed with a 500: read what the server raised.", todo=4)
    expect(ov["normal"]["status"] == 201, called="the same request after app.dependency_overrides.pop(get_settings)",
           expected="201 again (SHOP_MAX_QUANTITY is 50)", got=answer(ov["normal"]),
           hint="without the override, get_settings() must give the settings read from the environment.", todo=4)


def test_get_settings_cache_clear(report: dict) -> None:
    """get_settings.cache_clear() makes the next call read the environment again"""
    cc = require(report, "cache_clear")
    expect("error" not in cc, called="get_settings.cache_clear()",
           expected="get_settings has cache_clear() (functools.lru_cache)", got=lambda: cc["error"],
           hint="cache with @functools.lru_cache rather than a global variable or dict: "
                "tests reset it with get_settings.cache_clear().", todo=1)
    expect(cc["fresh"] == 7, called="SHOP_MAX_QUANTITY=7; get_settings.cache_clear(); get_settings().max_quantity",
           expected="7", got=str(cc["fresh"]),
           hint="Settings must read max_quantity from the environment variable SHOP_MAX_QUANTITY "
                "(model_config = SettingsConfigDict(env_prefix='SHOP_')).", todo=1)


# --- the HTTP client --------------------------------------------------------------------------------

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
                "a client per request pays for a new SSL context and a new connection every time.", todo=2)


def test_client_closed_on_shutdown(report: dict) -> None:
    """The HTTP client is closed when the app shuts down"""
    sd = require(report, "shutdown")
    still_open = [c for c in sd["clients"] if not c["closed"]]
    where = Counter(c["stage"] for c in still_open)
    raised = f"; while stopping, the app raised {server_errors(sd['server_errors'])}" if sd["server_errors"] else ""
    expect(not still_open and sd["established_to_upstream"] == 0, called="stop the app (lifespan shutdown)",
           expected="every httpx.AsyncClient the app built is closed, and no TCP connection to the upstream is left",
           got=f"{len(still_open)} of {len(sd['clients'])} client(s) still open "
               f"(built during {', '.join(f'{stage} x{n}' for stage, n in where.items()) or '-'}); "
               f"{sd['established_to_upstream']} connection(s) to the upstream still established{raised}",
           hint="wrap the lifespan's yield in `async with httpx.AsyncClient(...) as client:` "
                "(or call `await client.aclose()` after the yield).", todo=2)


# --- the session ---------------------------------------------------------------------------------------

def test_sessions_closed_after_requests(report: dict) -> None:
    """Every database session is closed after its request"""
    req = served(report)
    expect(req["held"] == 0, called=f"{req['orders']['n']} x POST /orders, then GET /orders",
           expected="every connection taken from the pool is back once the responses are sent",
           got=f"{req['held']} of {req['checkouts']} connection(s) still checked out after the requests",
           hint="get_session must yield the session and close it afterwards: "
                "`async with request.app.state.sessionmaker() as session: yield session`. "
                "A dependency that returns a session has nobody to close it.", todo=3)


def test_session_cleaned_up_on_error(report: dict) -> None:
    """When the endpoint fails, the session is rolled back and closed"""
    ep = require(report, "error_path")
    called = "POST /orders {'symbol': 'DOWN', 'quantity': 1} (the upstream answers 503 after the order row was written)"
    expect(ep["failed"]["status"] == 502, called=called, expected="502 (the upstream failed), never a 500",
           got=answer(ep["failed"]), hint="keep fetch_price as it is: it turns upstream failures into HTTPException(502).",
           todo=3)
    expect(ep["held"] == 0, called=called,
           expected="the session is closed after the error response: its connection is back in the pool",
           got=f"{ep['held']} connection(s) still checked out after the 502; the next order answered after "
               f"{ep['next_seconds']} s: {answer(ep['next'])}",
           hint="the endpoint's exception is thrown into get_session at its `yield`, so lines after the yield "
                "do not run: put the cleanup in `finally`, or yield inside `async with sessionmaker() as session:`.",
           todo=3)
    before, after = ep["stored_before"], ep["stored_after"]
    stored = None if before is None or after is None else after - before
    expect(ep["next"]["status"] == 201 and stored == 1, called=called + ", then POST /orders ACME and GET /orders",
           expected="the failed order is not stored (rolled back) and the next order is (201)",
           got=f"the next order answered {answer(ep['next'])}; orders stored in between: {stored}",
           hint="do not commit in the dependency when the endpoint raised; closing the session rolls back.", todo=3)


def test_bad_input_gets_4xx(report: dict) -> None:
    """Bad input gets a clear 4xx, never a 500"""
    bad = require(report, "bad_input")
    wanted = {label: (404 if "NOPE" in label else 422) for label in bad}
    wrong = [label for label, got in bad.items() if got["status"] != wanted[label]]
    expect(not wrong, called=wrong[0] if wrong else "bad requests",
           expected=f"{wanted[wrong[0]]}" if wrong else "4xx",
           got=lambda: answer(bad[wrong[0]]) + (f" (and {len(wrong) - 1} more: {', '.join(wrong[1:])})"
                                                if len(wrong) > 1 else ""),
           hint="validate with the OrderIn model and HTTPException(422 / 404); the starter's endpoints already do.",
           todo=None)  # the starter gets these right: a 500 here comes from another change, named in the Got line


# --- the test fixture ----------------------------------------------------------------------------------

def test_fixture_overrides_get_client(report: dict) -> None:
    """The fake_upstream fixture replaces get_client during a test"""
    problem = fixture_problem(report, "test_fake_upstream_answers")
    expect(problem is None, called=PYTEST_CALL + ": a test using fake_upstream calls the app's GET /prices/ACME",
           expected="200 with price 42.0, answered by the fake (no lifespan runs in this test)",
           got=lambda: problem[1],
           hint="fake_upstream must set app.dependency_overrides[get_client] to a dependency that yields a client "
                "on httpx.MockTransport(fake_prices), and the endpoints must take their client from "
                "Depends(get_client): an override changes nothing for code that reads a global.", todo=4)


def test_fixture_closes_fake_client(report: dict) -> None:
    """The fake client is closed after the test"""
    problem = fixture_problem(report, "test_fake_client_closed")
    expect(problem is None, called=PYTEST_CALL + ": a test using fake_upstream sends one request through get_client",
           expected="every httpx.AsyncClient the fixture built is closed when the test is over",
           got=lambda: problem[1],
           hint="write the override as a yield dependency: "
                "`async with httpx.AsyncClient(transport=...) as client: yield client`.", todo=5)


def test_fixture_serves_several_requests(report: dict) -> None:
    """A test using fake_upstream can send several requests, also after one that failed"""
    problem = fixture_problem(report, "test_fake_upstream_serves_several_requests")
    expect(problem is None,
           called=PYTEST_CALL + ": one test using fake_upstream sends four requests through get_client; "
                                "the second one fails in its endpoint (502)",
           expected="200, 502, 200, 200: every request gets a working fake client",
           got=lambda: problem[1],
           hint="the override runs once per request: each request needs a client of its own, opened and closed "
                "in the override (`async with httpx.AsyncClient(...) as client: yield client`); a client the "
                "first request closed cannot serve the second; and an override that catches the endpoint's "
                "exception must raise it again.", todo=5)


def test_fixture_cleans_up_after_failed_request(report: dict) -> None:
    """The fake client is closed also when the request failed"""
    problem = fixture_problem(report, "test_fake_client_closed_after_failed_request")
    expect(problem is None,
           called=PYTEST_CALL + ": a test using fake_upstream sends one request whose endpoint raises "
                                "HTTPException(502) after using the client",
           expected="every httpx.AsyncClient the fixture built is closed when the test is over",
           got=lambda: problem[1],
           hint="the endpoint's exception is thrown into the override at its `yield`, so a line after the yield "
                "does not run: yield inside `async with httpx.AsyncClient(...) as client:` (or close in `finally`).",
           todo=5)


def test_fixture_removes_its_override(report: dict) -> None:
    """fake_upstream removes its override after the test, so the suite passes in any order"""
    problem = fixture_problem(report, "test_no_override_left_behind")
    expect(problem is None,
           called=PYTEST_CALL + ": test_no_override_left_behind" + (f", run after {problem[0]}" if problem else ""),
           expected="no dependency override left once a test using fake_upstream is over",
           got=lambda: problem[1],
           hint="after the fixture's `yield`, remove the override: app.dependency_overrides.pop(get_client).", todo=6)


def test_fixture_keeps_other_overrides(report: dict) -> None:
    """fake_upstream removes only its own override (pop, not clear)"""
    problem = fixture_problem(report, "test_other_overrides_survive")
    expect(problem is None, called=PYTEST_CALL + ": another fixture overrides get_settings, then fake_upstream runs",
           expected="the get_settings override is still there after fake_upstream's teardown",
           got=lambda: problem[1],
           hint="app.dependency_overrides.clear() removes every fixture's overrides: pop only get_client.", todo=6)


def test_nothing_left_running(report: dict) -> None:
    """Nothing your code started is still running after the checks"""
    nothing_left_running(report)
