"""Runs a learner's module-01 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file database, records every engine the app creates (and when: at import,
at startup, during a request), imports app.py, serves it with uvicorn on 127.0.0.1, sends
single requests, failing requests and a burst of concurrent ones, stops the server, and
counts the connections still open. It never judges: the checks read the report.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sqlite3
import sys
import tempfile
import time
import traceback
from pathlib import Path

from course.checking import emit_report

SLOW = 0.2          # seconds the app's "shipping partner" takes in the checks
BURST = 50          # concurrent requests
CLIENT_TIMEOUT = 8  # seconds a client waits for an answer

report: dict = {"phase": "setup", "engines": []}
engines: list[dict] = []
phase = "setup"


def seed(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, price_cents INTEGER NOT NULL)")
        conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(1, "kettle", 3900), (2, "lamp", 8900), (3, "mug", 1200)])


def instrument() -> None:
    """Wrap create_async_engine so every engine the app makes is recorded and counted."""
    import sqlalchemy.ext.asyncio as sa_async
    import sqlalchemy.ext.asyncio.engine as sa_engine

    from sqlalchemy import event

    from course.probes import ConnectionCounter

    original = sa_engine.create_async_engine

    def recording_create_async_engine(*args, **kwargs):
        engine = original(*args, **kwargs)
        frames = [f for f in traceback.extract_stack()[:-1] if f.filename.endswith("app.py")]
        where = f"app.py line {frames[-1].lineno}: {frames[-1].line}" if frames else "outside app.py"
        counter = ConnectionCounter(engine)
        engines.append({"engine": engine, "phase": phase, "where": where, "counter": counter})

        def track_global_peak(*_args) -> None:  # registered after the counter's own listener
            report["peak_open_all_engines"] = max(report.get("peak_open_all_engines", 0),
                                                  sum(e["counter"].open for e in engines))

        event.listen(engine.sync_engine, "connect", track_global_peak)
        return engine

    sa_engine.create_async_engine = recording_create_async_engine
    sa_async.create_async_engine = recording_create_async_engine


def summary_of_engines() -> list[dict]:
    from course.probes import pool_status

    out = []
    for e in engines:
        status = pool_status(e["engine"])
        out.append({"phase": e["phase"], "where": e["where"], "open": e["counter"].open, "peak": e["counter"].peak,
                    "opened": e["counter"].opened, "checked_out": status.get("checked_out"),
                    "checked_in": status.get("checked_in"), "pool": status["pool"]})
    return out


def checked_out_total() -> int:
    total = 0
    for e in engines:
        fn = getattr(e["engine"].sync_engine.pool, "checkedout", None)
        total += fn() if callable(fn) else 0
    return total


def short_error() -> str:
    exc_type, exc, tb = sys.exc_info()
    frames = [f for f in traceback.extract_tb(tb) if "app.py" in f.filename]
    where = f" (app.py line {frames[-1].lineno})" if frames else ""
    return f"{exc_type.__name__}: {exc}{where}"


async def exercise_app(app, db: Path) -> None:
    import httpx

    from course.load import fire
    from course.probes import open_file_count
    from course.server import serve_in_thread

    global phase
    phase = "startup"
    report["phase"] = "startup"
    with serve_in_thread(app, timeout_graceful_shutdown=2) as server:
        phase = "requests"
        report["phase"] = "requests"
        async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT) as client:
            start = time.perf_counter()
            r = await client.get("/items/1")
            report["single"] = {"status": r.status_code, "body": r.text[:300], "seconds": time.perf_counter() - start}
            r = await client.get("/items/999")
            report["missing"] = {"status": r.status_code, "body": r.text[:300]}
            # Failing requests (404) in a row: a session that is never closed keeps its connection.
            after_errors = []
            for _ in range(3):
                r = await client.get("/items/998")
                await asyncio.sleep(0.05)
                after_errors.append({"status": r.status_code,
                                     "checked_out": checked_out_total()})
            r = await client.get("/items/2")
            report["after_errors"] = after_errors
            report["after_errors_ok"] = {"status": r.status_code, "body": r.text[:300]}
        await asyncio.sleep(0.05)
        report["checked_out_when_idle"] = checked_out_total()
        burst = await fire(server.url + "/items/3", n=BURST, concurrency=BURST, timeout=CLIENT_TIMEOUT, progress=False)
        report["burst"] = burst.as_dict()
        report["server_errors"] = dict(server.errors)
        report["open_during"] = open_file_count(db)
        phase = "shutdown"
        report["phase"] = "shutdown"
    report["stopped_cleanly"] = True
    # The lifespan's shutdown has run. Whatever is still open now stays open until the process exits.
    report["open_files_after_shutdown"] = open_file_count(db)


def main() -> None:
    global phase
    app_dir = Path(sys.argv[1]).resolve()
    tmp = tempfile.TemporaryDirectory(prefix="course-check-01-")
    db = Path(tmp.name) / "shop.db"
    seed(db)
    os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{db}"
    os.environ["SLOW_CALL_SECONDS"] = str(SLOW)
    report.update(slow=SLOW, burst_n=BURST, client_timeout=CLIENT_TIMEOUT)
    instrument()
    try:
        phase = "import"
        report["phase"] = "import"
        sys.path.insert(0, str(app_dir))
        os.chdir(tmp.name)  # a stray relative database file lands in the temp dir
        spec = importlib.util.spec_from_file_location("app", app_dir / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["app"] = module
        spec.loader.exec_module(module)
        report["engines_at_import"] = [{"where": e["where"]} for e in engines]
        app = getattr(module, "app", None)
        if app is None and hasattr(module, "create_app"):
            app = module.create_app()
        report["has_app"] = app is not None
        if app is not None:
            asyncio.run(exercise_app(app, db))
        report["phase"] = "done"
    except BaseException:  # noqa: BLE001 - everything becomes part of the report
        report["crash"] = short_error()
        report["crash_phase"] = phase
    finally:
        report["engines"] = summary_of_engines()
        emit_report(report)
        tmp.cleanup()
        os._exit(0)  # never wait for threads or connections the learner's code left behind


if __name__ == "__main__":
    main()
