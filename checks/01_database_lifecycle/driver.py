"""Runs a learner's module-01 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file database, records every engine the app creates (and in which stage: at
import, at startup, during a request), imports app.py, serves it with uvicorn on 127.0.0.1,
sends single requests, failing requests and a burst of concurrent ones, checks that two
concurrent sessions get connections of their own, stops the server, and counts the connections
still open. It never judges: the checks read the report.

Report keys (each check names the ones it needs with ``require``):

    engines_at_import     [{"where"}]: engines created while app.py was imported
    single                {"status", "body", "seconds", "server_error"}: GET /items/1 (status None: no answer;
                          server_error: the server's exception with the app's line, "" if none)
    missing               the same for GET /items/999
    after_errors          [{"status", "checked_out"}] x 3: GET /items/998, pool checked after each
    after_errors_ok       the same for GET /items/2 after those
    burst                 course.load.LoadResult.as_dict() of BURST concurrent GET /items/3
    slow_calls            {"calls", "holding"}: calls to quote_shipping up to the end of the burst, and how many
                          were made while that request held a database connection
    server_errors         the exceptions the server logged during the requests, with the app's line
    peak_open_all_engines the most connections open at once, all engines together
    isolation             {"distinct_connections", "saw_uncommitted", "hung"} for two sessions open at once
                          (or {"status", "body", "server_errors"} when that request failed)
    stopped_cleanly       True once the server stopped
    engines               [{"stage", "where", "open", "peak", "opened"}] at the end
    open_files_after_shutdown  handles on the database file after shutdown
    slow, burst_n         the settings of this run
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sqlite3
import time
import traceback
from pathlib import Path

from course.grading.checking import Driver, DriverError

SLOW = 0.2          # seconds the app's "shipping partner" takes in the checks
BURST = 20          # concurrent requests: 10x the pool, and a machine under load still serves them in time
CLIENT_TIMEOUT = 8  # seconds a client waits for an answer

ENGINES: list[dict] = []
HOLDERS: dict = {}  # asyncio task -> connections it has checked out from any engine
SLOW_CALLS = {"calls": 0, "holding": 0}  # calls to quote_shipping, and those made while holding a connection


def _current_task():
    import asyncio

    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def watch_slow_call(module) -> None:
    """Wrap the app's quote_shipping: does the request still hold a database connection while it
    waits for the slow partner? (A count names the cause; a latency limit depends on the machine.)"""
    original = getattr(module, "quote_shipping", None)
    if original is None:
        return

    async def quote_shipping(*args, **kwargs):
        SLOW_CALLS["calls"] += 1
        if HOLDERS.get(_current_task()):
            SLOW_CALLS["holding"] += 1
        return await original(*args, **kwargs)

    module.quote_shipping = quote_shipping


def seed(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:  # commits; it does not close (and the driver runs without garbage collection)
            conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, price_cents INTEGER NOT NULL)")
            conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(1, "kettle", 3900), (2, "lamp", 8900), (3, "mug", 1200)])
    finally:
        conn.close()


def instrument(d: Driver) -> None:
    """Wrap create_async_engine so every engine the app makes is recorded and counted."""
    import sqlalchemy.ext.asyncio as sa_async
    import sqlalchemy.ext.asyncio.engine as sa_engine
    from sqlalchemy import event

    from course.probes import ConnectionCounter

    original = sa_engine.create_async_engine

    def recording_create_async_engine(*args, **kwargs):
        engine = original(*args, **kwargs)
        frames = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(str(d.target))]
        where = f"{Path(frames[-1].filename).name} line {frames[-1].lineno}: {frames[-1].line}" if frames else "outside your files"
        counter = ConnectionCounter(engine)
        ENGINES.append({"engine": engine, "stage": d.current_stage, "where": where, "counter": counter})

        def checked_out(*_args) -> None:  # which request (task) holds a connection right now
            task = _current_task()
            if task is not None:
                HOLDERS[task] = HOLDERS.get(task, 0) + 1

        def checked_in(*_args) -> None:
            task = _current_task()
            if task is not None and HOLDERS.get(task):
                HOLDERS[task] -= 1

        event.listen(engine.sync_engine, "checkout", checked_out)
        event.listen(engine.sync_engine, "checkin", checked_in)

        def track_global_peak(*_args) -> None:  # registered after the counter's own listener
            d.report["peak_open_all_engines"] = max(d.report.get("peak_open_all_engines", 0),
                                                    sum(e["counter"].open for e in ENGINES))

        event.listen(engine.sync_engine, "connect", track_global_peak)
        return engine

    sa_engine.create_async_engine = recording_create_async_engine
    sa_async.create_async_engine = recording_create_async_engine


def engines_summary() -> list[dict]:
    return [{"stage": e["stage"], "where": e["where"], "open": e["counter"].open, "peak": e["counter"].peak,
             "opened": e["counter"].opened} for e in ENGINES]


def checked_out_total() -> int:
    total = 0
    for e in ENGINES:
        fn = getattr(e["engine"].sync_engine.pool, "checkedout", None)
        total += fn() if callable(fn) else 0
    return total


def add_isolation_probe(module) -> None:
    """A route the checks add to the learner's app: two sessions from the app's own get_session
    (through FastAPI, however it is written), open at the same time. Does each get a connection of
    its own, so that one cannot see the other's uncommitted write?"""
    from fastapi import Depends
    from sqlalchemy import text

    async def probe(a=Depends(module.get_session, use_cache=False), b=Depends(module.get_session, use_cache=False)):
        async def run() -> dict:
            conn_a, conn_b = await a.connection(), await b.connection()
            raw_a = (await conn_a.get_raw_connection()).driver_connection
            raw_b = (await conn_b.get_raw_connection()).driver_connection
            await a.execute(text("UPDATE items SET name = 'uncommitted' WHERE id = 3"))
            seen = (await b.execute(text("SELECT name FROM items WHERE id = 3"))).scalar_one()
            await a.rollback()
            await b.rollback()
            return {"distinct_connections": raw_a is not raw_b, "saw_uncommitted": seen == "uncommitted"}

        try:
            return await asyncio.wait_for(run(), 5)
        except (asyncio.TimeoutError, TimeoutError):
            # The second session waits for the first one's connection: they share it.
            return {"distinct_connections": False, "saw_uncommitted": None, "hung": True}

    module.app.add_api_route("/__course_isolation_probe", probe, methods=["GET"])


async def exercise_app(d: Driver, module, db: Path) -> None:
    import httpx

    from course.load import fire
    from course.probes import open_file_count
    from course.server import serve_in_thread

    app = module.app
    d.report.update(slow=SLOW, burst_n=BURST)
    with d.stage("startup", limit=10, doing="starting the app (the lifespan, up to its yield)"):
        server_cm = serve_in_thread(app, timeout_graceful_shutdown=2, ready_timeout=8)
        server = server_cm.__enter__()
    try:
        with d.stage("requests", limit=35, doing="answering the checks' requests"):
            async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT,
                                         limits=httpx.Limits(max_keepalive_connections=0)) as client:

                async def call(path: str) -> dict:
                    """One request's result; a failure is recorded, never raised, with the server's own
                    exception when there was one, so one broken request does not hide the others."""
                    before = collections.Counter(server.errors)
                    start = time.perf_counter()
                    try:
                        r = await client.get(path)
                        result = {"status": r.status_code, "body": r.text[:300]}
                    except httpx.HTTPError as exc:
                        result = {"status": None, "body": f"no answer: {type(exc).__name__}: {exc}"[:300]}
                    result["seconds"] = time.perf_counter() - start
                    await asyncio.sleep(0.02)  # let the server log what it raised
                    result["server_error"] = server.describe_errors(before)
                    return result

                d.report["single"] = await call("/items/1")
                d.report["missing"] = await call("/items/999")
                # Failing requests (404) in a row: a session that is never closed keeps its connection.
                after_errors = []
                for _ in range(3):
                    r = await call("/items/998")
                    await asyncio.sleep(0.03)
                    after_errors.append({"status": r["status"], "checked_out": checked_out_total()})
                d.report["after_errors"] = after_errors
                d.report["after_errors_ok"] = await call("/items/2")
            await asyncio.sleep(0.05)
            burst = await fire(server.url + "/items/3", n=BURST, concurrency=BURST, timeout=CLIENT_TIMEOUT, progress=False)
            d.report["burst"] = burst.as_dict()
            d.report["slow_calls"] = dict(SLOW_CALLS)
            d.report["server_errors"] = server.describe_errors()
            d.report["open_during"] = open_file_count(db)
            async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT) as client:
                r = await client.get("/__course_isolation_probe")
                d.report["isolation"] = (r.json() if r.status_code == 200 else
                                         {"status": r.status_code, "body": r.text[:300],
                                          "server_errors": server.describe_errors()})
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app (the lifespan after its yield)"):
            server_cm.__exit__(None, None, None)
    d.report["stopped_cleanly"] = True
    # The lifespan's shutdown has run. Whatever is still open now stays open until the process exits.
    d.report["open_files_after_shutdown"] = open_file_count(db)


def main(d: Driver) -> None:
    # No garbage collection while the app runs: a MissingGreenlet raised in the server's thread can
    # leave greenlets that crash the process (SIGSEGV) when another thread collects them later
    # (seen in notebook 01). The driver lives a few seconds; os._exit ends it without a collection.
    gc.disable()
    db = d.scratch / "shop.db"
    seed(db)
    os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{db}"
    os.environ["SLOW_CALL_SECONDS"] = str(SLOW)
    instrument(d)
    try:
        with d.stage("import", limit=10, doing="importing app.py",
                     hint="run `python -c 'import app'` in your exercise folder and read the first error."):
            module = d.import_learner("app.py", needs="app")
            d.report["engines_at_import"] = [{"where": e["where"]} for e in ENGINES]
        if not callable(getattr(module, "get_session", None)):
            raise DriverError("app.py defines no `get_session` dependency",
                              hint="keep the name get_session: the checks open sessions through it.")
        add_isolation_probe(module)
        watch_slow_call(module)
        asyncio.run(exercise_app(d, module, db))
    finally:
        d.report["engines"] = engines_summary()


if __name__ == "__main__":
    Driver.main(main)
