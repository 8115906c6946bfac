"""Runs the learner's module 02 code and prints one JSON report (course.checking.emit_report).

    python driver.py <folder with app.py and conftest.py>

What it does, in a fresh interpreter:

1. starts two pytest runs of ``fixture_tests.py`` next to copies of app.py and conftest.py
   (two test orders), in the background;
2. counts, from outside the learner's code: ``BaseSettings`` objects built, ``httpx.AsyncClient``
   objects built (and whether they end up closed), and the database pool's checkouts,
   checkins and resets (SQLAlchemy pool events on every pool);
3. starts a fake upstream price service and the learner's ``app`` under a real uvicorn
   (both in threads, 127.0.0.1, free ports), sends a burst of requests, a failing order,
   bad input, overrides ``get_settings``, calls ``get_settings.cache_clear()``, stops the app;
4. collects the pytest results and reports everything.

The garbage collector is paused while requests run, so a session or client the learner's code
forgets to close stays visible until it is counted (the collector would otherwise find it at a
random moment).
"""

import asyncio
import gc
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pydantic_settings
from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import event
from sqlalchemy.pool import Pool

import course
from course.checking import emit_report
from course.probes import tcp_connections

HERE = Path(__file__).resolve().parent
TARGET = Path(sys.argv[1]).resolve()
MAX_QUANTITY = 50
STARTUP_TIMEOUT = 5
ORDER_A = ["test_fake_upstream_answers", "test_no_override_left_behind", "test_other_overrides_survive"]
ORDER_B = list(reversed(ORDER_A))

report: dict = {"timings": {}}
T0 = time.perf_counter()


def lap(name: str) -> None:
    report["timings"][name] = round(time.perf_counter() - T0, 2)

# --- counters, installed before the learner's code is imported ---------------------------------

COUNTS: Counter = Counter()
CLIENTS: list[tuple[str, httpx.AsyncClient]] = []  # (phase it was built in, client)
PHASE = ["import"]
OWN_CLIENTS: set[int] = set()

_settings_init = pydantic_settings.BaseSettings.__init__


def _counting_settings_init(self, *args, **kwargs):
    COUNTS["settings"] += 1
    _settings_init(self, *args, **kwargs)


pydantic_settings.BaseSettings.__init__ = _counting_settings_init

_client_init = httpx.AsyncClient.__init__


def _counting_client_init(self, *args, **kwargs):
    _client_init(self, *args, **kwargs)
    CLIENTS.append((PHASE[0], self))


httpx.AsyncClient.__init__ = _counting_client_init

for _name in ("checkout", "checkin", "reset"):
    event.listen(Pool, _name, lambda *_, _name=_name: COUNTS.update([_name]))


def own_client(**kwargs) -> httpx.AsyncClient:
    """A client for the driver itself, left out of the learner's counts."""
    client = httpx.AsyncClient(**kwargs)
    OWN_CLIENTS.add(id(client))
    return client


def learner_clients(phase: str | None = None) -> list[httpx.AsyncClient]:
    return [c for p, c in CLIENTS if id(c) not in OWN_CLIENTS and (phase is None or p == phase)]


def held() -> int:
    return COUNTS["checkout"] - COUNTS["checkin"]


async def settle(baseline: int = 0, timeout: float = 0.5) -> int:
    """Wait (briefly) for the code after ``yield`` to run, since it runs after the response is
    sent; return how many connections are still checked out above ``baseline``."""
    deadline = time.monotonic() + timeout
    while held() > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return held() - baseline


def tail(exc: BaseException) -> str:
    lines = traceback.format_exception(exc)
    return "".join(lines)[-1500:]


# --- the fake upstream price service ------------------------------------------------------------

@asynccontextmanager
async def upstream_lifespan(app: FastAPI):
    app.state.peers = set()
    yield


upstream = FastAPI(lifespan=upstream_lifespan)


@upstream.get("/prices/{symbol}")
async def upstream_price(symbol: str, request: Request) -> dict:
    request.app.state.peers.add(tuple(request.scope["client"]))
    await asyncio.sleep(0.002)
    if symbol == "DOWN":
        raise HTTPException(503, "price service down")
    if symbol == "NOPE":
        raise HTTPException(404, "unknown symbol")
    return {"symbol": symbol, "price": 12.5}


# --- pytest runs of the learner's fixture -------------------------------------------------------

def start_fixture_runs(work: Path) -> list[tuple[list[str], subprocess.Popen, Path, Path]]:
    runs = []
    for label, order in (("a", ORDER_A), ("b", ORDER_B)):
        folder = work / f"fixture-{label}"
        folder.mkdir()
        for name in ("app.py", "conftest.py"):
            if (TARGET / name).exists():
                shutil.copy(TARGET / name, folder / name)
        shutil.copy(HERE / "fixture_tests.py", folder / "test_course_fixture.py")
        (folder / "pytest.ini").write_text(
            "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\ntimeout = 20\n"
        )
        xml, log = folder / "junit.xml", folder / "pytest.log"
        cmd = [sys.executable, "-m", "pytest", *[f"test_course_fixture.py::{t}" for t in order],
               "-q", "--color=no", "-p", "no:cacheprovider", "-p", "no:randomly", f"--junitxml={xml}"]
        env = {**os.environ, "SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{folder}/shop.db",
               "SHOP_UPSTREAM_URL": "http://127.0.0.1:9"}
        env.pop("FORCE_COLOR", None)
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL)
        runs.append((order, proc, xml, log))
    return runs


def collect_fixture_runs(runs, timeout: float = 30.0) -> list[dict]:
    results = []
    deadline = time.monotonic() + timeout
    for order, proc, xml, log in runs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        outcomes: dict[str, list[dict]] = {}  # test name -> its problems (failure in the test, error in a fixture)
        if xml.exists():
            for case in ET.parse(xml).getroot().iter("testcase"):
                problems = outcomes.setdefault(case.get("name", ""), [])
                for child in case:
                    if child.tag in ("failure", "error", "skipped"):
                        message = child.get("message") or child.text or ""
                        message = message.split("\nassert ")[0]  # pytest's rewritten assert adds noise
                        missing = re.search(r"fixture '(\w+)' not found", child.text or "")
                        if missing:
                            message = f"fixture '{missing[1]}' not found"
                        problems.append({"kind": child.tag, "message": message[:600]})
        results.append({"order": order, "returncode": proc.returncode, "outcomes": outcomes,
                        "log": log.read_text(errors="replace")[-1500:] if log.exists() else ""})
    return results


# --- the learner's app --------------------------------------------------------------------------

def import_learner():
    sys.path.insert(0, str(TARGET))
    spec = importlib.util.spec_from_file_location("app", TARGET / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


async def exercise(mod, up) -> None:
    app = getattr(mod, "app", None)
    if not isinstance(app, FastAPI):
        report["app_error"] = f"app.py has no FastAPI object named app (found {type(app).__name__})"
        return
    for name in ("get_settings", "get_client", "get_session", "Settings"):
        if not callable(getattr(mod, name, None)):
            report.setdefault("missing", []).append(name)
    if report.get("missing"):
        return

    no_reuse = httpx.Limits(max_keepalive_connections=0)  # uvicorn closes a connection after a 500
    PHASE[0] = "startup"
    mark = COUNTS.copy()
    try:
        server_cm = course.serve_in_thread(app, ready_timeout=STARTUP_TIMEOUT, stop_timeout=3)
        server = server_cm.__enter__()
    except Exception as exc:  # the lifespan raised (or hung): find out what
        if isinstance(exc, TimeoutError) or "did not st" in str(exc):
            report["startup_error"] = (f"the app was not ready after {STARTUP_TIMEOUT} s: something before "
                                       "the lifespan's yield does not finish")
            return
        report["startup_error"] = str(exc)

        async def startup_again() -> None:
            async with app.router.lifespan_context(app):
                pass

        try:
            await asyncio.wait_for(startup_again(), 5)
        except Exception as inner:
            report["startup_error"] = f"{type(inner).__name__}: {inner}"
        return
    failed = True
    try:
        report["startup"] = {"settings": COUNTS["settings"] - mark["settings"],
                             "clients": len(learner_clients("startup"))}
        async with own_client(base_url=server.url, timeout=10, limits=no_reuse) as http:

            async def call(method: str, url: str, **kwargs) -> list:
                """[status, body, what the server logged meanwhile (for a 500)]"""
                before = Counter(server.errors)
                r = await http.request(method, url, **kwargs)
                logged = "; ".join(Counter(server.errors) - before)
                return [r.status_code, r.text[:200], logged[:600]]

            # 1. a burst of ordinary requests
            PHASE[0] = "requests"
            mark = COUNTS.copy()
            upstream.state.peers.clear()
            prices = await course.fire(server.url + "/prices/ACME", n=24, concurrency=8, client=http, progress=False)
            orders = await course.fire(server.url + "/orders", method="POST", n=8, concurrency=1, client=http,
                                       progress=False, json={"symbol": "ACME", "quantity": 2})
            listing = await http.get("/orders")
            still_held = await settle()
            report["requests"] = {
                "prices": prices.as_dict(), "orders": orders.as_dict(),
                "listing": [listing.status_code, listing.text[:300]],
                "settings": COUNTS["settings"] - mark["settings"],
                "clients": len(learner_clients("requests")),
                "upstream_connections": len(upstream.state.peers),
                "checkouts": COUNTS["checkout"] - mark["checkout"], "held": still_held,
                "errors": dict(server.errors),
            }
            stored_before = listing.json().get("count") if listing.status_code == 200 else None

            # 2. an order whose pricing fails after the row was written
            mark = COUNTS.copy()
            errors_before = Counter(server.errors)
            held_before = held()
            down = await http.post("/orders", json={"symbol": "DOWN", "quantity": 1})
            leaked = await settle(held_before)
            start = time.perf_counter()
            after = await http.post("/orders", json={"symbol": "ACME", "quantity": 1})
            after_s = time.perf_counter() - start
            listing = await http.get("/orders")
            report["error_path"] = {
                "status": down.status_code, "body": down.text[:300], "held": leaked,
                "resets": COUNTS["reset"] - mark["reset"],
                "next_status": after.status_code, "next_body": after.text[:200], "next_seconds": round(after_s, 2),
                "stored_before": stored_before,
                "stored_after": listing.json().get("count") if listing.status_code == 200 else None,
                "new_errors": dict(Counter(server.errors) - errors_before),
            }
            gc.collect()  # end whatever leaked, so the next steps start clean
            await asyncio.sleep(0.05)

            # 3. a test-style override of get_settings, through Depends
            try:
                small = mod.Settings(max_quantity=1)
                app.dependency_overrides[mod.get_settings] = lambda: small
                try:
                    overridden = await call("POST", "/orders", json={"symbol": "ACME", "quantity": 2})
                finally:
                    app.dependency_overrides.pop(mod.get_settings, None)
                normal = await call("POST", "/orders", json={"symbol": "ACME", "quantity": 2})
                report["override"] = {"overridden": overridden, "normal": normal}
            except Exception as exc:
                report["override"] = {"error": tail(exc)}

            # 4. bad input (the unknown symbol last: it writes before it fails)
            bad = {}
            for label, kwargs in (
                ("quantity 0", {"json": {"symbol": "ACME", "quantity": 0}}),
                (f"quantity {MAX_QUANTITY + 1} (max {MAX_QUANTITY})", {"json": {"symbol": "ACME", "quantity": MAX_QUANTITY + 1}}),
                ("quantity 'many'", {"json": {"symbol": "ACME", "quantity": "many"}}),
                ("a body that is not JSON", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
                ("unknown symbol NOPE", {"json": {"symbol": "NOPE", "quantity": 1}}),
            ):
                bad[f"POST /orders with {label}"] = await call("POST", "/orders", **kwargs)
            bad["GET /prices/NOPE"] = await call("GET", "/prices/NOPE")
            report["bad_input"] = bad
        failed = False
    finally:
        PHASE[0] = "shutdown"
        try:
            server_cm.__exit__(None, None, None)
        except Exception as exc:
            report["shutdown_error"] = f"{type(exc).__name__}: {exc}"
        if failed:
            report.setdefault("driver_error", "the requests stopped early")

    report["shutdown"] = {
        "clients": [{"phase": p, "closed": c.is_closed} for p, c in CLIENTS if id(c) not in OWN_CLIENTS],
        "established_to_upstream": tcp_connections(os.getpid(), remote_port=up.port),
    }

    # 5. get_settings.cache_clear() and the environment
    try:
        first = mod.get_settings().max_quantity
        os.environ["SHOP_MAX_QUANTITY"] = "7"
        try:
            stale = mod.get_settings().max_quantity
            mod.get_settings.cache_clear()
            fresh = mod.get_settings().max_quantity
        finally:
            os.environ["SHOP_MAX_QUANTITY"] = str(MAX_QUANTITY)
            mod.get_settings.cache_clear()
        report["cache_clear"] = {"ok": True, "first": first, "stale": stale, "fresh": fresh}
    except AttributeError as exc:
        report["cache_clear"] = {"ok": False, "error": f"AttributeError: {exc}"}
    except Exception as exc:
        report["cache_clear"] = {"ok": False, "error": tail(exc)}


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="course-02-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # a .env in the learner's folder is not read; the database goes here
        runs = start_fixture_runs(work)
        lap("pytest runs started")
        try:
            with course.serve_in_thread(upstream) as up:
                os.environ.update({
                    "SHOP_UPSTREAM_URL": up.url,
                    "SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{work}/shop.db?timeout=1",
                    "SHOP_MAX_QUANTITY": str(MAX_QUANTITY),
                })
                try:
                    mod = import_learner()
                except BaseException as exc:  # noqa: BLE001 - reported to the learner
                    report["import_error"] = tail(exc)
                    mod = None
                report["import"] = {"settings": COUNTS["settings"], "clients": len(learner_clients("import"))}
                lap("imported")
                if mod is not None:
                    gc.disable()
                    try:
                        await exercise(mod, up)
                    except Exception as exc:
                        report["driver_error"] = tail(exc)
                    finally:
                        gc.enable()
                        gc.collect()
                lap("app exercised")
        finally:
            report["fixture_runs"] = collect_fixture_runs(runs)
            lap("pytest runs collected")
            os.chdir(HERE)


asyncio.run(main())
emit_report(report)
