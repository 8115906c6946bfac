"""Runs a learner's module-01 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file database, records every engine the app creates (and in which stage: at
import, at startup, during a request), imports app.py, serves it with uvicorn on 127.0.0.1
(course.grading.serving), sends single requests, failing requests and a burst of concurrent
ones, sends two requests at once that each use one session of the app's get_session (one writes
without committing and waits until the other has read), stops the server with SIGTERM, and counts
the connections still open. It never judges: the checks read the report.

A request's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error").

Report keys (each check names the ones it needs with ``require``):

    engines_at_import     [{"where"}]: engines created while app.py was imported
    single                GET /items/1
    missing               GET /items/999
    after_errors          [{**answer, "checked_out"}] x 3: GET /items/998, pool checked after each
    after_errors_ok       GET /items/2 after those
    burst                 course.load.LoadResult.as_dict() of BURST concurrent GET /items/3
    burst_server_errors   {text: count}: what the server raised during the burst, with the app's line
    slow_calls            {"calls", "holding"}: calls to quote_shipping up to the end of the burst, and how many
                          were made while that request held a database connection
    peak_open_all_engines the most connections open at once, all engines together
    isolation             two requests at once, each with one get_session: "writer" (updates item 3 without
                          committing, then waits until the reader has read) and "reader" (reads item 3 once the
                          writer has written), both answers; "distinct_connections" (None: a request never got
                          a connection), "reader_read" (False: the reader could not read while the writer's
                          transaction was open), "seen" (the name the reader read; None: it did not read)
    engines               [{"stage", "where", "open", "peak", "opened"}] at the end
    open_files_after_shutdown  handles on the database file after shutdown
    slow                  the slow call's seconds in this run
    stops                 the serving stage's stop (SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import sqlite3
import traceback
from pathlib import Path

from course.grading.checking import Driver, DriverError

SLOW = 0.2          # seconds the app's "shipping partner" takes in the checks
BURST = 20          # concurrent requests: 10x the pool, and a machine under load still serves them in time
CLIENT_TIMEOUT = 8  # seconds a client waits for an answer
PROBE_WAIT = 3      # seconds one isolation request waits for the other before it gives up
PROBE = "/__course_isolation_probe"

ENGINES: list[dict] = []
HOLDERS: dict = {}  # asyncio task -> connections it has checked out from any engine
SLOW_CALLS = {"calls": 0, "holding": 0}  # calls to quote_shipping, and those made while holding a connection


def _current_task():
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


def add_isolation_probe(module) -> dict:
    """Two routes the checks add to the learner's app, each with ONE session from the app's own
    get_session (through FastAPI, however it is scoped), as an endpoint has. Sent at once, they are
    two requests in flight together: the writer updates a row without committing and waits until
    the reader, in the other request, has read it. Does each request get a connection of its own,
    so that one cannot see the other's uncommitted write? Returns the state both routes fill in."""
    from fastapi import Depends
    from sqlalchemy import text

    state: dict = {"wrote": asyncio.Event(), "read": asyncio.Event()}  # bound to the server's loop on first use

    async def raw_connection(session):
        return (await (await session.connection()).get_raw_connection()).driver_connection

    async def writer(session=Depends(module.get_session)) -> dict:
        try:
            state["writer"] = await raw_connection(session)
            await session.execute(text("UPDATE items SET name = 'uncommitted' WHERE id = 3"))
            state["wrote"].set()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(state["read"].wait(), PROBE_WAIT)
            return {"reader_read": state["read"].is_set()}
        finally:
            state["wrote"].set()  # never leave the reader waiting
            await session.rollback()

    async def reader(session=Depends(module.get_session)) -> dict:
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(state["wrote"].wait(), PROBE_WAIT)
        try:
            state["reader"] = await raw_connection(session)
            state["seen"] = (await session.execute(text("SELECT name FROM items WHERE id = 3"))).scalar_one()
            state["read"].set()
            return {"seen": state["seen"]}
        finally:
            await session.rollback()

    module.app.add_api_route(PROBE + "/writer", writer, methods=["GET"])
    module.app.add_api_route(PROBE + "/reader", reader, methods=["GET"])
    return state


async def exercise_app(d: Driver, module, db: Path, probe: dict) -> None:
    from course.load import fire
    from course.probes import open_file_count

    d.report["slow"] = SLOW
    with d.serve(module.app) as svc:
        with d.stage("requests", limit=35, doing="answering the checks' requests"):
            d.report["single"] = await svc.send("GET", "/items/1")
            d.report["missing"] = await svc.send("GET", "/items/999")
            # Failing requests (404) in a row: a session that is never closed keeps its connection. The
            # answer comes once the app is done with the request, its dependencies' cleanup included.
            d.report["after_errors"] = [{**await svc.send("GET", "/items/998"), "checked_out": checked_out_total()}
                                        for _ in range(3)]
            d.report["after_errors_ok"] = await svc.send("GET", "/items/2")
            mark = svc.mark()
            burst = await fire(svc.url + "/items/3", n=BURST, concurrency=BURST, timeout=CLIENT_TIMEOUT, progress=False)
            d.report["burst"] = burst.as_dict()
            d.report["burst_server_errors"] = dict(collections.Counter(svc.errors.since(mark)))
            d.report["slow_calls"] = dict(SLOW_CALLS)
            writer, reader = await svc.together(svc.send("GET", PROBE + "/writer"), svc.send("GET", PROBE + "/reader"))
            both = "writer" in probe and "reader" in probe
            d.report["isolation"] = {"writer": writer, "reader": reader, "reader_read": probe["read"].is_set(),
                                     "distinct_connections": probe["writer"] is not probe["reader"] if both else None,
                                     "seen": probe.get("seen")}
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
        module = d.import_stage("app.py")
        d.report["engines_at_import"] = [{"where": e["where"]} for e in ENGINES]
        if not callable(getattr(module, "get_session", None)):
            raise DriverError("app.py defines no `get_session` dependency",
                              hint="keep the name get_session: the checks open sessions through it.")
        probe = add_isolation_probe(module)
        watch_slow_call(module)
        asyncio.run(exercise_app(d, module, db, probe))
    finally:
        d.report["engines"] = engines_summary()


if __name__ == "__main__":
    Driver.main(main)
