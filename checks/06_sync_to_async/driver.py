"""Runs a learner's module-06 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file whose ``users`` lookups take LOOKUP seconds (a view calls a function that
waits; every connection, sync or async, gets it), starts a slow scoring service (uvicorn in a
thread of its own, course.blocking.slow_upstream: it counts connections, calls held at once and
attempts per user), imports app.py, serves its ``app`` under uvicorn with a lag probe on the
app's own event loop (course.blocking.LagProbe), sends a few requests at once (and a chain of them one after another), a burst of concurrent
ones and a burst whose first attempts get a 503, stops the server and
counts the connections to the scoring service still open. It never judges: the checks read the report.

Report keys (each check names the ones it needs with ``require``). An "answer" is
``{"status", "body", "seconds", "server_error"}`` (status None: no answer; server_error: the
server's exception with the app's line, "" if none).

    settings      {"slow", "lookup", "slow_lookup", "retry_delay", "burst_n", "retry_n", "attempts",
                   "executor_workers"}: this run's numbers
    single        answer to GET /users/1            (these five and the chain run at the same time)
    missing       answer to GET /users/999
    retry         answer to GET /users/77, whose first attempt gets a 503; "attempts" the service saw
    down          answer to GET /users/78, whose every attempt gets a 503; "attempts" the service saw
    slow_lookup   answer to GET /users/90, whose lookup takes SLOW_LOOKUP s; "max_lag": the longest the
                  app's loop was late while these requests ran
    sequential    {"statuses", "connections"}: GET /users/91..96 one after another (the service answering
                  them at once), and the connections to the service whose first call was one of them
    burst         LoadResult.as_dict() of BURST_N concurrent GET /users/{1..BURST_N}, plus "peak" (calls
                  the service held at once; it holds each until no new call arrives for SLOW s), "max_lag"
                  (longest the app's loop was late), "blocked" (total lateness of the wake-ups more than
                  20 ms late: time the loop was blocked), "server_errors"
    retry_burst   the same for RETRY_N concurrent requests whose first attempts get a 503 ("peak": second
                  attempts held at once, each for SLOW s)
    after_shutdown {"established"}: TCP connections from this process to the service once the app stopped
"""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
import time

from course.grading.checking import Driver

SLOW = 0.1          # seconds the scoring service takes per call
LOOKUP = 0.02       # seconds each users lookup takes in the database...
SLOW_USER, SLOW_LOOKUP = 90, 0.25  # ...except this user's (a sync session blocks the loop that long)
RETRY_DELAY = 0.1   # the app's RETRY_DELAY (its first wait; it may wait longer before later attempts)
BURST_N = 50        # concurrent requests: more than any default executor (32 threads at most) or anyio's 40
RETRY_N = 20        # concurrent requests whose first attempt gets a 503
CHAIN = range(91, 97)  # users requested one after another (the service answering them at once)
USERS = 100
CLIENT_TIMEOUT = 20


def seed(path: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("CREATE TABLE user_rows (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)")
            conn.executemany("INSERT INTO user_rows VALUES (?, ?)", [(i, f"user {i}") for i in range(1, USERS + 1)])
            # Reading a name waits LOOKUP seconds: a query that waits on the database.
            conn.execute("CREATE VIEW users AS SELECT id, course_lookup(id, name) AS name FROM user_rows")
    finally:
        conn.close()


def slow_lookups() -> None:
    """Every SQLite connection opened from now on (sqlite3, SQLAlchemy's pysqlite, aiosqlite) knows
    course_lookup(): it waits LOOKUP seconds and returns its argument."""
    import sqlite3.dbapi2 as dbapi2

    original = sqlite3.connect

    def lookup(user_id, value):
        time.sleep(SLOW_LOOKUP if user_id == SLOW_USER else LOOKUP)
        return value

    def connect(*args, **kwargs):
        conn = original(*args, **kwargs)
        conn.create_function("course_lookup", 2, lookup)
        return conn

    sqlite3.connect = connect
    dbapi2.connect = connect


def burst_summary(result, stats, probe, since, until, server, before) -> dict:
    summary = result.as_dict()
    summary.update(peak=stats.peak, max_lag=round(probe.max_lag(since, until), 3),
                   blocked=round(probe.blocked_seconds(since, until, over=0.02), 3),
                   server_errors=server.describe_errors(before))
    return summary


async def exercise_app(d: Driver, module, upstream, stats) -> None:
    import httpx

    from course.blocking import LagProbe
    from course.probes import tcp_connections
    from course.server import serve_in_thread

    probe = LagProbe(module.app)
    with d.stage("startup", limit=10, doing="starting the app (the lifespan, up to its yield)"):
        server_cm = serve_in_thread(probe, timeout_graceful_shutdown=2, ready_timeout=8)
        server = server_cm.__enter__()
    try:
        with d.stage("requests", limit=50, doing="answering the checks' requests"):
            async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT,
                                         limits=httpx.Limits(max_keepalive_connections=0)) as client:

                async def call(path: str) -> dict:
                    before = collections.Counter(server.errors)
                    start = time.perf_counter()
                    try:
                        r = await client.get(path)
                        result = {"status": r.status_code, "body": r.text[:300]}
                    except httpx.HTTPError as exc:
                        result = {"status": None, "body": f"no answer: {type(exc).__name__}: {exc}"[:300]}
                    result["seconds"] = round(time.perf_counter() - start, 3)
                    await asyncio.sleep(0.02)  # let the server log what it raised
                    # (these requests run at the same time: an error may be another one's)
                    result["server_error"] = server.describe_errors(before)
                    return result

                async def chain() -> list:
                    statuses = []
                    for i in CHAIN:
                        statuses.append((await call(f"/users/{i}"))["status"])
                    return statuses

                # Independent requests at once: a user, a missing one, one whose first attempt gets a 503,
                # one whose every attempt does, one whose lookup is slow, and a few one after another.
                stats.reset(delay=SLOW, flaky={"77"}, down={"78"}, instant={str(i) for i in CHAIN})
                since = probe.mark()
                d.report["single"], d.report["missing"], retry, down, slow, statuses = await asyncio.gather(
                    call("/users/1"), call("/users/999"), call("/users/77"), call("/users/78"),
                    call(f"/users/{SLOW_USER}"), chain())
                d.report["retry"] = {**retry, "attempts": stats.attempts["77"]}
                d.report["down"] = {**down, "attempts": stats.attempts["78"]}
                d.report["slow_lookup"] = {**slow, "max_lag": round(probe.max_lag(since, probe.mark()), 3)}
                d.report["sequential"] = {"statuses": statuses, "connections": stats.opened_by({str(i) for i in CHAIN})}
                stats.reset(flaky=False, down=False, instant=())

            await asyncio.sleep(0.02)
            stats.reset(batch=True)  # calls that arrive together are held together: "peak" counts them
            before, since = collections.Counter(server.errors), probe.mark()
            result = await burst(server.url, range(1, BURST_N + 1))
            until = probe.mark()
            await asyncio.sleep(0.03)
            d.report["burst"] = burst_summary(result, stats, probe, since, until, server, before)

            stats.reset(flaky=True, batch=False)
            before, since = collections.Counter(server.errors), probe.mark()
            result = await burst(server.url, range(BURST_N + 1, BURST_N + RETRY_N + 1))
            until = probe.mark()
            await asyncio.sleep(0.03)
            d.report["retry_burst"] = burst_summary(result, stats, probe, since, until, server, before)
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app (the lifespan after its yield)"):
            server_cm.__exit__(None, None, None)
    d.report["after_shutdown"] = {"established": tcp_connections(os.getpid(), remote_port=upstream.port)}


async def burst(base_url: str, ids: range):
    """len(ids) concurrent requests, one per user id (each id's first attempt is its own)."""
    import httpx

    from course.load import LoadResult

    result = LoadResult(label=f"{len(ids)} concurrent GET /users/<id>", n=len(ids), concurrency=len(ids), wall=0.0)
    limits = httpx.Limits(max_connections=len(ids), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT, limits=limits) as client:

        async def one(i: int) -> None:
            start = time.perf_counter()
            try:
                r = await client.get(f"/users/{i}")
            except httpx.HTTPError as exc:
                result.statuses["error"] += 1
                result.errors[f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__] += 1
                return
            result.latencies.append(time.perf_counter() - start)
            result.statuses[r.status_code] += 1
            if r.status_code >= 400:
                result.errors[f"{r.status_code}: {r.text[:200]}"] += 1

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        result.wall = time.perf_counter() - start
    return result


def main(d: Driver) -> None:
    from course.blocking import default_executor_workers, slow_upstream
    from course.server import serve_in_thread

    db = d.scratch / "users.db"
    seed(str(db))
    slow_lookups()
    os.environ.update(DATABASE_PATH=str(db), RETRY_DELAY=str(RETRY_DELAY))
    d.report["settings"] = {"slow": SLOW, "lookup": LOOKUP, "slow_lookup": SLOW_LOOKUP, "retry_delay": RETRY_DELAY,
                            "burst_n": BURST_N, "retry_n": RETRY_N, "attempts": 3,
                            "executor_workers": default_executor_workers()}
    upstream = slow_upstream(delay=SLOW)
    with serve_in_thread(upstream, ready_timeout=8) as up:
        os.environ["SCORES_URL"] = up.url
        with d.stage("import", limit=10, doing="importing app.py",
                     hint="run `python -c 'import app'` in your exercise folder and read the first error."):
            module = d.import_learner("app.py", needs="app")
        asyncio.run(exercise_app(d, module, up, upstream.state.stats))


if __name__ == "__main__":
    Driver.main(main)
