"""Runs a learner's module-02 code for real and reports what happened, as JSON.

    python driver.py FOLDER        (a folder with app.py and conftest.py)

It starts a pytest run of fixture_tests.py next to copies of app.py and conftest.py (its tests
in two orders, in the background); counts, from outside the learner's code, the ``BaseSettings``
and ``httpx.AsyncClient`` objects built (and whether they end up closed) and the database pool's
checkouts and checkins; starts a fake upstream price service (uvicorn in a thread, 127.0.0.1, a
free port); imports app.py and calls ``get_settings.cache_clear()`` with a changed environment;
serves the learner's ``app`` the same way and sends a burst of ordinary requests, an order whose
pricing fails, a test-style override of ``get_settings`` and bad input; stops the app; and
collects the pytest results. It never judges: the checks read the report.

Every request is sent on a fresh connection and a transport error is that request's answer, so
one failing request never changes another's. The garbage collector is paused while the app
runs, so a session or client the code forgets to close stays visible until it is counted.

Report keys (each check names the ones it needs with ``require``). An "answer" is
``{"status", "body", "server_errors"}``: the status (None when no answer came: then
``"transport"`` says why), the body's start, and the exceptions the server logged meanwhile
(after a 500, waiting for uvicorn to log it), each as "Type: message (app.py line N: code)".

    import          {"settings", "clients"}: Settings and httpx.AsyncClient objects built while
                    app.py was imported
    requests        the ordinary requests: {"prices", "orders"} (course.load.LoadResult.as_dict()
                    of PRICES x GET /prices/ACME, PRICE_CONCURRENCY at a time, and ORDERS x POST
                    /orders one at a time), "listing" (answer to GET /orders), "server_errors"
                    ({text: count} logged meanwhile), "settings" and "clients" (built meanwhile),
                    "upstream_connections" (TCP connections the upstream accepted), "checkouts"
                    (pool checkouts) and "held" (connections still checked out afterwards)
    error_path      an order whose pricing fails after its row was written: "failed" (answer),
                    "held" (connections still checked out after it), "next" (answer to the next
                    order) and "next_seconds", "stored_before" and "stored_after" (GET /orders
                    counts before the failing order and after the next one)
    override        dependency_overrides[get_settings] -> Settings(max_quantity=1): "overridden"
                    and "normal" (answers to an order of 2, with and after the override), or
                    "error" (Settings(max_quantity=1) raised)
    bad_input       {request label: answer} for invalid orders and an unknown symbol
    shutdown        after the app stopped: "clients" ([{"stage", "closed"}] for every client the
                    code built), "established_to_upstream" (TCP connections still open to it),
                    "server_errors" (logged while stopping)
    cache_clear     {"fresh"}: max_quantity after SHOP_MAX_QUANTITY=7 and get_settings.cache_clear(),
                    or {"error"}
    fixture_runs    one per order of the course's tests: {"order", "tests" ({name: {"outcome",
                    "message"}}), and of the one pytest run: "collect_errors", "timed_out", "tail"}
"""

import asyncio
import gc
import logging
import os
import re
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from course.grading.checking import Driver, DriverError

HERE = Path(__file__).resolve().parent
MAX_QUANTITY = 50
PRICES, PRICE_CONCURRENCY, ORDERS = 24, 8, 8
CLIENT_TIMEOUT = 5  # seconds a request may take
FIXTURE_TESTS = ["test_fake_upstream_answers", "test_fake_client_closed", "test_fake_upstream_serves_several_requests",
                 "test_fake_client_closed_after_failed_request", "test_no_override_left_behind",
                 "test_other_overrides_survive"]
ORDERS_OF_TESTS = [FIXTURE_TESTS, FIXTURE_TESTS[::-1]]
FIXTURE_FILES = ["test_course_fixture", "test_course_fixture_reversed"]  # one copy of fixture_tests.py per order


# --- the learner's exceptions, as one line ----------------------------------------------------

def _mine(filename: str, folder: Path) -> bool:
    return str(Path(filename).resolve()).startswith(str(folder) + os.sep)


def exception_text(exc: BaseException, folder: Path) -> str:
    """"Type: message (app.py line N: code)": the innermost exception of the chain (the one to
    read), and the last line of the learner's files in the chain's tracebacks."""
    chain = [exc]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    inner = chain[-1]
    where = ""
    for e in reversed(chain):
        frames = [f for f in traceback.extract_tb(e.__traceback__) if _mine(f.filename, folder)]
        if frames:
            f = frames[-1]
            where = f" ({Path(f.filename).name} line {f.lineno}" + (f": {f.line.strip()}" if f.line else "") + ")"
            break
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    message = " / ".join(lines[:3])[:300]
    return type(inner).__name__ + (f": {message}" if message else "") + where


def traceback_text(text: str, folder: Path) -> str:
    """The same from a formatted traceback (uvicorn logs a failed lifespan startup as text)."""
    frames = re.findall(r'^ *File "([^"]+)", line (\d+), in .*\n *(.*)$', text, flags=re.M)
    mine = [f for f in frames if _mine(f[0], folder)]
    where = f" ({Path(mine[-1][0]).name} line {mine[-1][1]}: {mine[-1][2].strip()})" if mine else ""
    last = text.rsplit('  File "', 1)[-1].splitlines()[1:]  # after the last frame's "File" line
    head = next((i for i, ln in enumerate(last) if ln and not ln.startswith(" ")), None)
    if head is None:
        return text.strip().splitlines()[-1][:300] + where
    body = [ln.strip() for ln in last[head:head + 3] if ln.strip()]
    name, _, rest = " / ".join(body).partition(": ")
    return f"{name.rsplit('.', 1)[-1]}: {rest}"[:300] + where


class ServerErrors(logging.Filter):
    """Every exception uvicorn logs (a filter on the "uvicorn.error" logger sees each record,
    whatever handlers serve_in_thread installs), as the learner should read it."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()  # the server's thread adds, the driver's reads

    def filter(self, record: logging.LogRecord) -> bool:
        text = None
        if record.exc_info and record.exc_info[1] is not None:
            text = exception_text(record.exc_info[1], self.folder)
        elif "Traceback (most recent call last)" in str(record.msg):
            text = traceback_text(record.getMessage(), self.folder)
        if text:
            with self._lock:
                self._seen[text] += 1
        return True

    def mark(self) -> Counter[str]:
        with self._lock:
            return self._seen.copy()

    def since(self, mark: Counter[str]) -> dict[str, int]:
        return dict(self.mark() - mark)

    async def wait_since(self, mark: Counter[str], timeout: float = 0.5) -> list[str]:
        """What was logged since ``mark``, waiting briefly: uvicorn logs the exception after the 500 is sent."""
        deadline = time.monotonic() + timeout
        while not self.since(mark) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return list(self.since(mark))


# --- counters, installed before the learner's code is imported -----------------------------------

class Counters:
    """Settings objects and httpx clients built (with the driver's stage at the time), and the
    database pool's checkouts and checkins, counted from outside the learner's code."""

    def __init__(self, d: Driver) -> None:
        self.d = d
        # Every key there from the start: the server's thread only changes values, so copying is safe.
        self.counts: Counter[str] = Counter(settings=0, checkout=0, checkin=0)
        self.clients: list[tuple[str | None, Any]] = []
        self.own: list[Any] = []  # the driver's own clients, kept alive so they are never confused

    def install(self) -> None:
        import httpx
        import pydantic_settings
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        settings_init, client_init = pydantic_settings.BaseSettings.__init__, httpx.AsyncClient.__init__
        counters = self

        def counting_settings_init(self, *args, **kwargs):
            counters.counts["settings"] += 1
            settings_init(self, *args, **kwargs)

        def counting_client_init(self, *args, **kwargs):
            client_init(self, *args, **kwargs)
            counters.clients.append((counters.d.current_stage, self))

        pydantic_settings.BaseSettings.__init__ = counting_settings_init
        httpx.AsyncClient.__init__ = counting_client_init
        for name in ("checkout", "checkin"):
            event.listen(Pool, name, lambda *_, name=name: self.counts.update([name]))

    def own_client(self, **kwargs: Any) -> Any:
        import httpx

        client = httpx.AsyncClient(**kwargs)
        self.own.append(client)
        return client

    def learner_clients(self, stage: str | None = None) -> list[tuple[str | None, Any]]:
        return [(s, c) for s, c in self.clients
                if not any(c is o for o in self.own) and (stage is None or s == stage)]

    @property
    def held(self) -> int:
        return self.counts["checkout"] - self.counts["checkin"]

    async def settle(self, baseline: int = 0, timeout: float = 1.0) -> int:
        """Connections still checked out above ``baseline``, after waiting briefly for the code
        after get_session's ``yield`` (it runs once the response is sent)."""
        deadline = time.monotonic() + timeout
        while self.held > baseline and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.held - baseline


# --- the fake upstream price service ---------------------------------------------------------------

def make_upstream() -> tuple[Any, set]:
    """A price service: every symbol costs 12.5, DOWN answers 503, NOPE 404. Also returns the set
    of client addresses it saw (one per TCP connection)."""
    from fastapi import FastAPI, HTTPException, Request

    peers: set = set()
    upstream = FastAPI()

    @upstream.get("/prices/{symbol}")
    async def price(symbol: str, request: Request) -> dict:
        peers.add(tuple(request.scope["client"]))
        await asyncio.sleep(0.002)
        if symbol == "DOWN":
            raise HTTPException(503, "price service down")
        if symbol == "NOPE":
            raise HTTPException(404, "unknown symbol")
        return {"symbol": symbol, "price": 12.5}

    return upstream, peers


# --- the pytest runs of the learner's fixture --------------------------------------------------------

def start_fixture_runs(d: Driver) -> Any:
    """One pytest run in the background: the course's tests next to the learner's app.py and
    conftest.py, in one order, then (from a second copy of the file, as pytest runs a test only
    once per run) in the reverse order."""
    import course.pytest_runner as runner

    files = {name: d.target / name for name in ("app.py", "conftest.py") if (d.target / name).is_file()}
    files.update({f"{stem}.py": HERE / "fixture_tests.py" for stem in FIXTURE_FILES})
    ids = [f"{stem}.py::{test}" for stem, order in zip(FIXTURE_FILES, ORDERS_OF_TESTS) for test in order]
    return runner.start_pytest(*ids, "-q", "-p", "no:randomly", files=files, ini={**runner.FUNCTION_LOOPS, "timeout": 10},
                               env={"SHOP_DATABASE_URL": "sqlite+aiosqlite:///shop.db",
                                    "SHOP_UPSTREAM_URL": "http://127.0.0.1:9"},  # nothing listens there
                               timeout=30, prefix="course02-fixture-",
                               # In the driver's own folder, which run_driver removes even if this process
                               # is stopped at a stage's time limit.
                               scratch_dir=d.scratch)


def problem_text(message: str, longrepr: str) -> str:
    """A failure as the learner should read it: the assertion's text, or the fixture's error and line."""
    missing = re.search(r"fixture '(\w+)' not found", message + longrepr)
    if missing:
        return f"pytest: fixture '{missing[1]}' not found (it belongs in conftest.py, next to app.py)"
    text = message.split("\nassert ")[0].strip()
    text = re.sub(r"^failed on teardown: (AssertionError: )?", "", text)
    text = re.sub(r"^failed on setup: ", "setting up the test's fixtures raised ", text)
    text = re.sub(r"^AssertionError: ", "", text)
    where = re.findall(r"^(\S+\.py):(\d+): \w+", longrepr, flags=re.M)
    where = [w for w in where if not Path(w[0]).name.startswith(tuple(FIXTURE_FILES))]
    if where and "(conftest.py line" not in text and "(app.py line" not in text:
        text += f" ({Path(where[-1][0]).name} line {where[-1][1]})"
    return text[:700]


def collect_fixture_runs(proc: Any) -> list[dict]:
    """The run's results, one entry per order of the tests."""
    run = proc.wait()
    collect_errors = []
    for t in run.tests:
        if t.name.startswith("collecting"):
            lines = [ln[2:].strip() for ln in t.longrepr.splitlines() if ln.startswith("E ")]
            collect_errors.append(" / ".join(lines[-3:]) or t.first_line)
    results = []
    for stem, order in zip(FIXTURE_FILES, ORDERS_OF_TESTS):
        tests = {t.name: {"outcome": t.outcome,
                          "message": "" if t.outcome == "passed" else problem_text(t.message, t.longrepr)}
                 for t in run.tests if t.file == stem and not t.name.startswith("collecting")}
        results.append({"order": order, "tests": tests, "collect_errors": collect_errors,
                        "timed_out": run.timed_out, "tail": run.tail(8)[-800:]})
    return results


class Driver02(Driver):
    """The skeleton, plus what this driver needs whenever the report is printed, also when the
    app hung and a stage overran its limit: the pytest run of the learner's fixture (it does not
    depend on the app, and finished long before) goes into the report."""

    fixture_run: Any = None

    def emit(self) -> None:
        run = self.fixture_run
        if run is not None and "fixture_runs" not in self.report and run.poll() is not None:
            try:
                self.report["fixture_runs"] = collect_fixture_runs(run)
            except Exception:  # noqa: BLE001 - the report must still be printed
                pass
        super().emit()


# --- the learner's app ---------------------------------------------------------------------------------

async def exercise_app(d: Driver, mod: Any, counters: Counters, errors: ServerErrors, upstream_peers: set,
                       upstream_port: int) -> None:
    import httpx

    from course.load import fire
    from course.probes import tcp_connections
    from course.server import serve_in_thread

    app = mod.app
    hint = "run `uvicorn app:app` in your folder: the lifespan must reach its yield without an error."
    with d.stage("startup", limit=15, doing="starting the app (its lifespan, up to the yield)", hint=hint):
        mark = errors.mark()
        # Its own timeouts first (a startup that hangs is stopped within 6 + 2 x 2 s), so the
        # message says what hung, and the checks that do not need the app still get their part.
        server_cm = serve_in_thread(app, ready_timeout=6, stop_timeout=2)
        try:
            server = server_cm.__enter__()
        except Exception as exc:  # noqa: BLE001 - the lifespan failed: say where, from what uvicorn logged
            logged = errors.since(mark)
            raise DriverError(next(iter(logged)) if logged else str(exc).splitlines()[0][:300], hint=hint) from None
    try:
        with d.stage("requests", limit=30, doing="answering the checks' requests",
                     hint="start the app with uvicorn and send the README's requests by hand; read the server's log."):
            # A fresh connection per request: after a 500 uvicorn closes the connection, and a kept-alive
            # one would turn the next request's answer into a ReadError.
            http = counters.own_client(base_url=server.url, timeout=CLIENT_TIMEOUT,
                                       limits=httpx.Limits(max_keepalive_connections=0))
            async with http:
                async def ask(method: str, url: str, **kwargs: Any) -> dict:
                    mark = errors.mark()
                    try:
                        r = await http.request(method, url, **kwargs)
                    except httpx.HTTPError as exc:
                        return {"status": None, "body": "", "transport": f"{type(exc).__name__}: {exc}"[:300],
                                "server_errors": await errors.wait_since(mark, 0.2)}
                    # A 500 is an exception the app did not handle: uvicorn logs it just after sending the 500.
                    logged = await errors.wait_since(mark) if r.status_code == 500 else list(errors.since(mark))
                    return {"status": r.status_code, "body": r.text[:300], "server_errors": logged}

                def count(answer: dict) -> int | None:
                    """The orders stored, from an answer to GET /orders."""
                    found = re.search(r'"count"\s*:\s*(\d+)', answer["body"]) if answer["status"] == 200 else None
                    return int(found[1]) if found else None

                # 1. ordinary requests
                mark, logged = counters.counts.copy(), errors.mark()
                upstream_peers.clear()
                prices = await fire(server.url + "/prices/ACME", n=PRICES, concurrency=PRICE_CONCURRENCY, client=http,
                                    timeout=CLIENT_TIMEOUT, progress=False)
                orders = await fire(server.url + "/orders", method="POST", n=ORDERS, concurrency=1, client=http,
                                    timeout=CLIENT_TIMEOUT, progress=False, json={"symbol": "ACME", "quantity": 2})
                listing = await ask("GET", "/orders")
                held = await counters.settle()
                d.report["requests"] = {
                    "prices": prices.as_dict(), "orders": orders.as_dict(), "listing": listing,
                    "server_errors": errors.since(logged),
                    "settings": counters.counts["settings"] - mark["settings"],
                    "clients": len(counters.learner_clients("requests")),
                    "upstream_connections": len(upstream_peers),
                    "checkouts": counters.counts["checkout"] - mark["checkout"], "held": held,
                }

                # 2. an order whose pricing fails after its row was written
                held_before = counters.held
                stored_before = count(await ask("GET", "/orders"))
                failed = await ask("POST", "/orders", json={"symbol": "DOWN", "quantity": 1})
                leaked = await counters.settle(held_before)
                start = time.perf_counter()
                after = await ask("POST", "/orders", json={"symbol": "ACME", "quantity": 1})
                after_seconds = time.perf_counter() - start
                d.report["error_path"] = {"failed": failed, "held": leaked, "next": after,
                                          "next_seconds": round(after_seconds, 2), "stored_before": stored_before,
                                          "stored_after": count(await ask("GET", "/orders"))}
                gc.collect()  # end whatever leaked there, so the next parts start clean
                await asyncio.sleep(0.05)

                # 3. a test-style override of get_settings, through Depends
                try:
                    small = mod.Settings(max_quantity=1)
                except Exception as exc:  # noqa: BLE001 - the learner's Settings: this part's result
                    d.report["override"] = {"error": exception_text(exc, d.target)}
                else:
                    app.dependency_overrides[mod.get_settings] = lambda: small
                    try:
                        overridden = await ask("POST", "/orders", json={"symbol": "ACME", "quantity": 2})
                    finally:
                        app.dependency_overrides.pop(mod.get_settings, None)
                    normal = await ask("POST", "/orders", json={"symbol": "ACME", "quantity": 2})
                    d.report["override"] = {"overridden": overridden, "normal": normal}

                # 4. bad input (the unknown symbol last: it writes before it fails)
                bad = {}
                for label, kwargs in (
                    ("quantity 0", {"json": {"symbol": "ACME", "quantity": 0}}),
                    (f"quantity {MAX_QUANTITY + 1} (max {MAX_QUANTITY})",
                     {"json": {"symbol": "ACME", "quantity": MAX_QUANTITY + 1}}),
                    ("quantity 'many'", {"json": {"symbol": "ACME", "quantity": "many"}}),
                    ("a body that is not JSON", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
                    ("unknown symbol NOPE", {"json": {"symbol": "NOPE", "quantity": 1}}),
                ):
                    bad[f"POST /orders with {label}"] = await ask("POST", "/orders", **kwargs)
                bad["GET /prices/NOPE"] = await ask("GET", "/prices/NOPE")
                d.report["bad_input"] = bad
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app (its lifespan after the yield)",
                     hint="the code after the lifespan's yield must finish quickly."):
            mark = errors.mark()
            server_cm.__exit__(None, None, None)
    d.report["shutdown"] = {
        "clients": [{"stage": s, "closed": c.is_closed} for s, c in counters.learner_clients()],
        "established_to_upstream": tcp_connections(os.getpid(), remote_port=upstream_port),
        "server_errors": errors.since(mark),
    }


def cache_clear(d: Driver, mod: Any) -> None:
    with d.stage("settings", limit=5, doing="calling get_settings.cache_clear() and get_settings()"):
        try:
            clear = mod.get_settings.cache_clear
            os.environ["SHOP_MAX_QUANTITY"] = "7"
            try:
                clear()
                fresh = mod.get_settings().max_quantity
            finally:
                os.environ["SHOP_MAX_QUANTITY"] = str(MAX_QUANTITY)
                clear()
            d.report["cache_clear"] = {"fresh": fresh}
        except Exception as exc:  # noqa: BLE001 - this part's result
            d.report["cache_clear"] = {"error": exception_text(exc, d.target)}


def main(d: Driver02) -> None:
    # The database in the driver's scratch folder, in memory (/dev/shm) where there is one: a commit
    # on a busy disk can take 50 ms.
    d.memory = d.scratch / "db"
    d.memory.mkdir()
    d.fixture_run = start_fixture_runs(d)  # first: it takes longest, and needs nothing from here

    from fastapi import FastAPI

    from course.server import serve_in_thread

    counters = Counters(d)
    counters.install()
    errors = ServerErrors(d.target)
    logging.getLogger("uvicorn.error").addFilter(errors)
    try:
        upstream, peers = make_upstream()
        with serve_in_thread(upstream, ready_timeout=8) as up:
            os.environ.update({"SHOP_UPSTREAM_URL": up.url, "SHOP_MAX_QUANTITY": str(MAX_QUANTITY),
                               "SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{d.memory}/shop.db?timeout=1"})
            with d.stage("import", limit=10, doing="importing app.py",
                         hint="run `python -c 'import app'` in your exercise folder and read the first error."):
                mod = d.import_learner("app.py")
                d.report["import"] = {"settings": counters.counts["settings"],
                                      "clients": len(counters.learner_clients("import"))}
                # The README's names (the checks and the learner's tests use them), after the import's
                # counts: they are right whatever is missing.
                for name in ("app", "Settings", "get_settings", "get_client", "get_session"):
                    if not hasattr(mod, name):
                        raise DriverError(f"app.py defines no `{name}`",
                                          hint=f"keep the name `{name}` from the exercise: the checks look for it by name.")
                if not isinstance(mod.app, FastAPI):
                    raise DriverError(f"app.py's `app` is a {type(mod.app).__name__}, not a FastAPI application",
                                      hint="keep `app = FastAPI(lifespan=lifespan)` at module level.")
            cache_clear(d, mod)  # before the app runs: it needs only get_settings
            gc.disable()
            try:
                asyncio.run(exercise_app(d, mod, counters, errors, peers, up.port))
            finally:
                gc.enable()
                gc.collect()
    finally:
        with d.stage("fixture tests", limit=40, doing="running the course's tests with your conftest.py"):
            d.report["fixture_runs"] = collect_fixture_runs(d.fixture_run)


if __name__ == "__main__":
    Driver02.main(main)
