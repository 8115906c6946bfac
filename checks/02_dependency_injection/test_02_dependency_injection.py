"""Checks for exercise 02: dependency injection.

The learner's code runs once, in a subprocess (driver.py): their app under a real uvicorn with a
fake upstream and a SQLite file (app_stage.py), their conftest.py under a real pytest with the
course's tests (fixture_stage.py, fixture_tests.py). Each test below reads one part of what
happened and names one expectation. Nothing here reads the learner's source.
"""

from collections import Counter

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "02_dependency_injection"
WHAT = "importing app.py, serving it under uvicorn and running your conftest.py under pytest"
DRIVER_TIMEOUT = 50
PYTEST_CALL = "pytest with your conftest.py and the course's tests"


def server_errors(logged: dict | list) -> str:
    counted = Counter(logged) if isinstance(logged, list) else logged
    return "; ".join(f"{n} x {text}" for text, n in counted.items()) or "none logged"


def places(built: list[dict]) -> str:
    """Where each object was built (the line of your code, and when), most frequent first."""
    counted = Counter(f"{b['where'] or 'outside your files'} ({b['stage']})" for b in built)
    return "; ".join(f"{n} x {where}" for where, n in counted.most_common()) or "-"


def count(listing: dict) -> int | None:
    """The orders stored, from an answer to GET /orders."""
    body = listing["json"] if listing["status"] == 200 else None
    return body.get("count") if isinstance(body, dict) else None


def served(report: dict) -> dict:
    """The ordinary requests, which must work before the counts taken while serving mean anything."""
    req = require(report, "requests")
    prices, orders = req["prices"], req["orders"]
    failed_orders = [o for o in orders if o["status"] != 201]
    expect(prices["ok"] == prices["n"] and not failed_orders,
           called=f"{prices['n']} x GET /prices/ACME ({prices['concurrency']} at a time) and "
                  f"{len(orders)} x POST /orders {{'symbol': 'ACME', 'quantity': 2}}",
           expected="every request succeeds (200 and 201)",
           got=lambda: f"GET statuses {prices['statuses']}, POST statuses {[o['status'] for o in orders]}; "
                       f"answers: {'; '.join(dict.fromkeys(prices['errors']))[:300] or '-'}"
                       + (f"; first failed order: {answer(failed_orders[0])}" if failed_orders else "")
                       + f"; the server raised: {server_errors(req['server_errors'])}",
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
            why = f"pytest did not finish within {run['timeout']} s" if run["timed_out"] else "the test did not run"
            return order, f"{why}; pytest's last lines: {run['tail'][-300:]}"
        if outcome["outcome"] != "passed":
            return order, outcome["message"] or outcome["outcome"]
    return None


# --- the app ------------------------------------------------------------------------------------

def test_app_runs(report: dict) -> None:
    """app.py imports, starts and answers ordinary requests"""
    req = served(report)
    listing, n = req["listing"], len(req["orders"])
    expect(count(listing) == n, called="GET /orders",
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
    built = require(report, "settings_built")
    n = req["prices"]["n"] + len(req["orders"])
    per_request = sum(1 for b in built if b["stage"] == "requests") > 1
    expect(len(built) <= 1, called=f"starting the app, {n} requests and more, stopping it",
           expected="Settings built at most once in all that (the lifespan and the endpoints both ask get_settings())",
           got=f"Settings built {len(built)} times: {places(built)}",
           hint="get_settings builds a new Settings() on every call: decorate it with @functools.lru_cache."
           if per_request else "every Settings() in the app goes through the cached get_settings(), the lifespan's "
                               "too: a second Settings() is read separately (and a test's override of get_settings "
                               "does not reach it).", todo=1)


def test_endpoints_use_get_settings(report: dict) -> None:
    """Endpoints take settings from Depends(get_settings), so a test can override them"""
    ov = require(report, "override")
    expect("error" not in ov, called="Settings(max_quantity=1)", expected="Settings accepts max_quantity",
           got=lambda: ov["error"], hint="keep the Settings fields the README lists.", todo=1)
    status = ov["overridden"]["status"]
    expect(status == 422,
           called=f"app.dependency_overrides[get_settings] = lambda: Settings(max_quantity=1); "
                  f"{ov['overridden']['request']}",
           expected="422: the overridden settings (max_quantity=1) apply",
           got=answer(ov["overridden"]),
           hint="place_order must receive its settings as a parameter, "
                "`settings: Annotated[Settings, Depends(get_settings)]`, not read a module-level object."
           if status != 500 else "the request failed with a 500: read what the server raised.", todo=4)
    expect(ov["normal"]["status"] == 201, called="the same request after app.dependency_overrides.pop(get_settings)",
           expected=f"201 again (SHOP_MAX_QUANTITY is {report['max_quantity']})", got=answer(ov["normal"]),
           hint="without the override, get_settings() must give the settings read from the environment.", todo=4)


def test_get_settings_cache_clear(report: dict) -> None:
    """get_settings.cache_clear() makes the next call read the environment again"""
    cc = require(report, "cache_clear")
    expect("error" not in cc, called="get_settings.cache_clear()",
           expected="get_settings has cache_clear() (functools.lru_cache)", got=lambda: cc["error"],
           hint="cache with @functools.lru_cache rather than a global variable or dict: "
                "tests reset it with get_settings.cache_clear().", todo=1)
    expect(cc["fresh"] == cc["set"],
           called=f"SHOP_MAX_QUANTITY={cc['set']}; get_settings.cache_clear(); get_settings().max_quantity",
           expected=str(cc["set"]), got=str(cc["fresh"]),
           hint="Settings must read max_quantity from the environment variable SHOP_MAX_QUANTITY "
                "(model_config = SettingsConfigDict(env_prefix='SHOP_')).", todo=1)


# --- the HTTP client --------------------------------------------------------------------------------

def test_one_client_for_all_requests(report: dict) -> None:
    """One HTTP client, created at startup, serves every request"""
    req = served(report)
    n = req["prices"]["n"] + len(req["orders"])
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
    raised = f"; while stopping, the app raised {server_errors(sd['server_errors'])}" if sd["server_errors"] else ""
    expect(not still_open and sd["established_to_upstream"] == 0, called="stop the app (lifespan shutdown)",
           expected="every httpx.AsyncClient the app built is closed, and no TCP connection to the upstream is left",
           got=f"{len(still_open)} of {len(sd['clients'])} client(s) still open (built at {places(still_open)}); "
               f"{sd['established_to_upstream']} connection(s) to the upstream still established{raised}",
           hint="wrap the lifespan's yield in `async with httpx.AsyncClient(...) as client:` "
                "(or call `await client.aclose()` after the yield).", todo=2)


# --- the session ---------------------------------------------------------------------------------------

def test_sessions_closed_after_requests(report: dict) -> None:
    """Every database session is closed after its request"""
    req = served(report)
    expect(req["held"] == 0, called=f"{len(req['orders'])} x POST /orders, then GET /orders",
           expected="every connection taken from the pool is back once the responses are sent",
           got=f"{req['held']} of {req['checkouts']} connection(s) still checked out after the requests",
           hint="get_session must yield the session and close it afterwards: "
                "`async with request.app.state.sessionmaker() as session: yield session`. "
                "A dependency that returns a session has nobody to close it.", todo=3)


def test_session_cleaned_up_on_error(report: dict) -> None:
    """When the endpoint fails, the session is rolled back and closed"""
    ep = require(report, "error_path")
    called = f"{ep['failed']['request']} (the upstream answers 503 after the order row was written)"
    expect(ep["failed"]["status"] == 502, called=called, expected="502 (the upstream failed), never a 500",
           got=answer(ep["failed"]), hint="keep fetch_price as it is: it turns upstream failures into HTTPException(502).",
           todo=3)
    expect(ep["held"] == 0, called=called,
           expected="the session is closed after the error response: its connection is back in the pool",
           got=f"{ep['held']} connection(s) still checked out after the 502; the next order answered after "
               f"{ep['next']['seconds']:.2f} s: {answer(ep['next'])}",
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
    wanted = [(a, 404 if "NOPE" in a["request"] else 422) for a in bad]
    wrong = [(a, status) for a, status in wanted if a["status"] != status]
    others = ", ".join(a["request"] for a, _ in wrong[1:])
    expect(not wrong, called=wrong[0][0]["request"] if wrong else "bad requests",
           expected=f"{wrong[0][1]}" if wrong else "4xx",
           got=lambda: answer(wrong[0][0]) + (f" (and {len(wrong) - 1} more: {others})" if len(wrong) > 1 else ""),
           hint="validate with the OrderIn model and HTTPException(422 / 404); the starter's endpoints already do.",
           todo=None)  # the starter gets these right: a 500 here comes from another change, named in the Got line


def test_concurrent_orders(report: dict) -> None:
    """Two orders at once both land; a valid order after a refused one succeeds"""
    together = require(report, "together")
    answers = together["answers"]
    before, after = together["stored_before"], together["stored_after"]
    stored = None if before is None or after is None else after - before
    expect(all(a["status"] == 201 for a in answers) and stored == 2,
           called=" and ".join(a["request"] for a in answers) + ", sent at the same moment, then GET /orders",
           expected="201 for both, and both orders stored (2 more)",
           got=" / ".join(answer(a) for a in answers) + f"; orders stored in between: {stored}",
           hint="each request needs a session of its own from get_session (one per request, closed after it): "
                "a session shared by requests mixes their transactions.", todo=3)
    refused, valid = require(report, "after_refusal")
    expect(refused["status"] == 422 and valid["status"] == 201, called=f"{refused['request']}, then {valid['request']}",
           expected="422 for the quantity over the limit, then 201 for the same order at the limit",
           got=f"{answer(refused)}\nthen {answer(valid)}",
           hint="a refused request must leave nothing behind (an open transaction, a held connection) that stops "
                "the next valid one; max_quantity itself is allowed.", todo=3)


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


def test_fixture_clients_closed_at_session_end(report: dict) -> None:
    """Every HTTP client your fixtures open is closed by the end of the test session"""
    clients = require(report, "fixture_clients")
    problem = fixture_problem(report, "test_fake_upstream_answers") if clients is None else None
    expect(clients is not None, called=PYTEST_CALL, expected="the test session runs to its end",
           got=lambda: problem[1] if problem else "the session did not end", todo=5)
    mine = [c for c in clients if not c["where"].startswith("app.py")]  # app.py's own: the import check's
    still_open = [c for c in mine if not c["closed"]]
    expect(not still_open, called=PYTEST_CALL + ", counting every httpx client built while it ran",
           expected="every client your fixtures built (fakes included) is closed when the session ends",
           got=lambda: f"{len(still_open)} of {len(mine)} still open at the end: "
                       + "; ".join(f"{n} x {c}" for c, n in Counter(f"{o['kind']} built at {o['where']}"
                                                                    for o in still_open).items()),
           hint="a client built when conftest.py is imported, or in a fixture that returns it, is never closed: "
                "build the fake client in the override, `async with httpx.AsyncClient(...) as client: yield client`.",
           todo=5)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
