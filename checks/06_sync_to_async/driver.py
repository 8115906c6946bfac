"""Runs a learner's module-06 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file whose ``users`` lookups take LOOKUP seconds (a view calls a function that
waits; every connection, sync or async, gets it), starts a slow scoring service (uvicorn in a
thread of its own, course.blocking.slow_upstream: it counts connections, calls held at once and
attempts per user), imports app.py, serves its ``app`` with a lag probe on the app's own event
loop (course.blocking.LagProbe), sends a few requests at once (and a chain of them one after
another), a burst of concurrent ones and a burst whose first attempts get a 503, stops the server
and counts the connections to the scoring service still open. It never judges: the checks read
the report.

A burst stops waiting as soon as its verdict is certain (every expectation that reads it fails
whatever its remaining requests do, by the limits in ``settings``): its numbers are then those of
that moment, "cut" counts the requests still unanswered, and the scoring service and the database
answer those at once so the server is idle before the next step. A burst the app answers in time
is never cut.

Report keys (each check names the ones it needs with ``require``). An answer is the serving
stage's record (course.grading.serving.Answer: "request", "status", "body", "json", "seconds",
"server_error").

    settings      {"slow", "slow_lookup", "retry_delay", "attempts", "executor_workers", "after_refusal_timeout",
                   "limits": {"ratio", "peak_share", "quiet_lag", "burst_lag", "blocked_share"}}: this run's
                   numbers, and the limits the checks hold the app to
    single, same  answers to GET /users/1, twice at the same moment (these and the next five at once)
    missing       answer to GET /users/999
    retry         answer to GET /users/77, whose first attempt gets a 503 (the second is answered at once);
                  "attempts" the service saw, "gap": seconds between the first two (None: fewer)
    down          answer to GET /users/78, whose every attempt gets a 503; "attempts" the service saw, "gaps":
                  seconds between one of its first ``attempts`` attempts and the next (the error path's waits)
    after_refusal answer to GET /users/78 again, sent after that answer once the service answers again (the
                  client waits AFTER_REFUSAL_TIMEOUT s for it)
    slow_lookup   answer to GET /users/90, whose lookup takes SLOW_LOOKUP s; "max_lag": the longest the
                  app's loop was late while these requests ran
    sequential    {"statuses", "connections"}: GET /users/91..96 one after another (the service answering
                  them at once), and the connections to the service whose first call was one of them
    burst         LoadResult.as_dict() of BURST_N concurrent GET /users/{1..BURST_N}, plus "one" (seconds
                  one such request took alone, sent the same way just before), "peak" (calls the service
                  held at once; it holds each until no new call arrives for SLOW s), "max_lag" (longest
                  the app's loop was late), "blocked" (total lateness of the wake-ups more than 20 ms late:
                  time the loop was blocked), "cut" (requests unanswered when it stopped waiting),
                  "server_errors"
    retry_burst   the same for RETRY_N concurrent requests whose first attempts get a 503 ("peak": second
                  attempts held at once, each for SLOW s)
    after_shutdown {"established", "database_files"}: TCP connections from this process to the service, and
                  descriptors it holds on the SQLite file (one per open connection), once the app stopped
    stops         the serving stage's stop (SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
import collections
import math
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
ATTEMPTS = 3        # the app's ATTEMPTS (kept by the README's rules)
CHAIN = range(91, 97)  # users requested one after another (the service answering them at once)
USERS = 100
CLIENT_TIMEOUT = 20
AFTER_REFUSAL_TIMEOUT = 4  # seconds for the request after a 502 (an app that left a lock held never answers)
DRAIN_LIMIT = 5     # seconds to let a cut burst's remaining requests finish
LIMITS = {
    "ratio": 10,         # N concurrent requests may take at most this many single requests' time (serial: N)
    "peak_share": 0.85,  # share of the burst's calls the scoring service must hold at the same time
    "quiet_lag": 0.12,   # seconds the app's loop may be late while a few requests run (one lookup: 0.25 s)
    "burst_lag": 0.5,    # ...and during a burst (a blocked loop: seconds)
    "blocked_share": 0.25,  # of the retry waits, the loop may spend at most this share blocked (in all)
}
WAITS = {"on": True}  # off: lookups fail at once (a cut burst's remaining requests: their answers are not read)


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
    course_lookup(): it waits LOOKUP seconds and returns its argument (while WAITS is off, it fails
    at once: the requests a cut burst left behind end quickly)."""
    import sqlite3.dbapi2 as dbapi2

    original = sqlite3.connect

    def lookup(user_id, value):
        if not WAITS["on"]:
            raise RuntimeError("the checks stopped waiting for this request")
        time.sleep(SLOW_LOOKUP if user_id == SLOW_USER else LOOKUP)
        return value

    def connect(*args, **kwargs):
        conn = original(*args, **kwargs)
        conn.create_function("course_lookup", 2, lookup)
        return conn

    sqlite3.connect = connect
    dbapi2.connect = connect


async def burst(svc, ids: range, settled=lambda answered, failed, elapsed: False) -> tuple:
    """len(ids) concurrent requests, one per user id (each id's first attempt is its own). Stops
    waiting once ``settled(answered, failed, elapsed)`` is true: returns the LoadResult of that
    moment (as a dict, with "cut": how many were unanswered then) and what is still running."""
    import httpx

    from course.load import LoadResult

    result = LoadResult(label=f"{len(ids)} concurrent GET /users/<id>", n=len(ids), concurrency=len(ids), wall=0.0)
    limits = httpx.Limits(max_connections=len(ids), max_keepalive_connections=0)
    client = httpx.AsyncClient(base_url=svc.url, timeout=CLIENT_TIMEOUT, limits=limits)

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
    pending = {asyncio.ensure_future(one(i)) for i in ids}
    while pending:
        # Woken by each answer, and every 50 ms: a blocked app may answer nothing for long.
        _, pending = await asyncio.wait(pending, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
        answered = len(ids) - len(pending)
        if pending and settled(answered, answered - result.ok, time.perf_counter() - start):
            break
    result.wall = time.perf_counter() - start
    return {**result.as_dict(), "cut": len(pending)}, (client, pending)


async def drain(stats, running) -> None:
    """Let a cut burst's remaining requests end at once (the service answers without waiting, the
    database refuses), then close its client."""
    client, pending = running
    if pending:
        saved = (stats.delay, stats.flaky, stats.batch)
        stats.delay, stats.flaky, stats.batch, WAITS["on"] = 0, False, False, False
        _, late = await asyncio.wait(pending, timeout=DRAIN_LIMIT)
        for task in late:
            task.cancel()
        stats.delay, stats.flaky, stats.batch = saved
        WAITS["on"] = True
    await client.aclose()


def lags(probe, since: float, until: float | None = None) -> tuple[float, float]:
    """The longest the app's loop was late since ``since``, and the time it was blocked (wake-ups more
    than 20 ms late), counting the block going on now (up to ``until``): the probe reports a block
    only when it wakes, late by at least that much."""
    late = [lag for _, lag in probe.window(since, until)]
    samples = probe.samples
    last = samples[-1][0] if samples else since
    late.append(max(0.0, (until or probe.mark()) - max(last, since) - probe.interval))
    return max(late), sum(lag for lag in late if lag > 0.02)


def summary(result: dict, peak: int, probe, since: float, until: float, errors: str) -> dict:
    max_lag, blocked = lags(probe, since, until)
    return {**result, "peak": peak, "max_lag": round(max_lag, 3), "blocked": round(blocked, 3),
            "server_errors": errors}


async def loop_caught_up(probe, limit: float = 5.0) -> float:
    """Wait until the app's loop has woken the lag probe once more (so a block that ended just now is
    reported before the next measurement starts), and return the new starting point."""
    mark, deadline = probe.mark(), time.monotonic() + limit
    while not probe.window(mark) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return probe.mark()


class Arrivals:
    """An ASGI wrapper around the scoring service: when each call for each key arrived."""

    def __init__(self, app) -> None:
        self.app, self.times = app, collections.defaultdict(list)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.times[scope["path"].rsplit("/", 1)[-1]].append(time.perf_counter())
        await self.app(scope, receive, send)

    def gap(self, key: str) -> float | None:
        first = self.times[key][:2]
        return round(first[1] - first[0], 3) if len(first) == 2 else None

    def gaps(self, key: str, attempts: int) -> list[float]:
        """Seconds between each of the first ``attempts`` calls for ``key`` and the next."""
        first = self.times[key][:attempts]
        return [round(b - a, 3) for a, b in zip(first, first[1:])]


async def exercise_app(d: Driver, module, upstream, stats, arrivals: Arrivals) -> None:
    from course.blocking import LagProbe
    from course.probes import open_file_count, tcp_connections

    probe = LagProbe(module.app)
    with d.serve(probe) as svc:
        with d.stage("requests", limit=50, doing="answering the checks' requests"):

            async def chain() -> list:
                return [(await svc.send("GET", f"/users/{i}"))["status"] for i in CHAIN]

            async def down_then_back() -> tuple:
                down = await svc.send("GET", "/users/78")
                attempts, gaps = stats.attempts["78"], arrivals.gaps("78", ATTEMPTS)
                stats.down = False  # the service answers again (at once): the same user's next request must succeed
                stats.instant = {*stats.instant, "78"}
                back = await svc.send("GET", "/users/78", timeout=AFTER_REFUSAL_TIMEOUT)
                return {**down, "attempts": attempts, "gaps": gaps}, back

            # Independent requests at once: a user twice, a missing one, one whose first attempt gets a 503, one
            # whose every attempt does (then once more), one whose lookup is slow, and a few one after another.
            # User 77's second attempt is answered at once: its time is the app's wait before it.
            stats.reset(delay=SLOW, flaky={"77"}, down={"78"}, instant={"77", *(str(i) for i in CHAIN)})
            since = probe.mark()
            (d.report["single"], d.report["same"], d.report["missing"], retry,
             (d.report["down"], d.report["after_refusal"]), slow, statuses) = await svc.together(
                svc.send("GET", "/users/1"), svc.send("GET", "/users/1"), svc.send("GET", "/users/999"),
                svc.send("GET", "/users/77"), down_then_back(), svc.send("GET", f"/users/{SLOW_USER}"), chain())
            until = probe.mark()
            await loop_caught_up(probe)  # a block that ended with the last answer is reported by now
            d.report["retry"] = {**retry, "attempts": stats.attempts["77"], "gap": arrivals.gap("77")}
            d.report["slow_lookup"] = {**slow, "max_lag": round(probe.max_lag(since, until), 3)}
            d.report["sequential"] = {"statuses": statuses, "connections": stats.opened_by({str(i) for i in CHAIN})}
            quiet_failed = d.report["slow_lookup"]["max_lag"] > LIMITS["quiet_lag"]

            async def measured(ids: range, settled) -> dict:
                """A burst, with what the service and the lag probe saw while it ran (until it was cut)."""
                mark, since = svc.mark(), await loop_caught_up(probe)
                result, running = await burst(svc, ids, lambda *progress: settled(since, *progress))
                until, peak = probe.mark(), stats.peak
                if not result["cut"]:
                    await loop_caught_up(probe)  # a block that ended with the burst is reported by now
                measured = summary(result, peak, probe, since, until, svc.errors_since(mark))
                await drain(stats, running)
                return measured

            # One request alone, then BURST_N at once, sent the same way.
            stats.reset(flaky=False, down=False, instant=())
            one, running = await burst(svc, range(1, 2))
            await drain(stats, running)
            one_wall = round(one["wall"], 3)  # as reported: the checks compare with this very number
            stats.reset(batch=True)  # calls that arrive together are held together: "peak" counts them
            needed = math.ceil(LIMITS["peak_share"] * BURST_N)

            def burst_settled(since: float, answered: int, failed: int, elapsed: float) -> bool:
                too_slow = failed > 0 or elapsed > LIMITS["ratio"] * one_wall
                peak_known = stats.peak >= needed or BURST_N - answered < needed
                return too_slow and peak_known and (quiet_failed or lags(probe, since)[0] > LIMITS["burst_lag"])

            d.report["burst"] = {**await measured(range(1, BURST_N + 1), burst_settled), "one": one_wall}

            stats.reset(flaky=True, batch=False)
            lagged = quiet_failed or d.report["burst"]["max_lag"] > LIMITS["burst_lag"]

            def retry_settled(since: float, answered: int, failed: int, elapsed: float) -> bool:
                max_lag, blocked = lags(probe, since)
                too_blocked = failed > 0 or blocked > LIMITS["blocked_share"] * RETRY_N * RETRY_DELAY
                return too_blocked and (lagged or max_lag > LIMITS["burst_lag"])

            d.report["retry_burst"] = await measured(range(BURST_N + 1, BURST_N + RETRY_N + 1), retry_settled)
    d.report["after_shutdown"] = {"established": tcp_connections(os.getpid(), remote_port=upstream.port),
                                  "database_files": open_file_count(os.environ["DATABASE_PATH"])}


def main(d: Driver) -> None:
    from course.blocking import default_executor_workers, slow_upstream
    from course.server import serve_in_thread

    db = d.scratch / "users.db"
    seed(str(db))
    slow_lookups()
    os.environ.update(DATABASE_PATH=str(db), RETRY_DELAY=str(RETRY_DELAY))
    d.report["settings"] = {"slow": SLOW, "slow_lookup": SLOW_LOOKUP, "retry_delay": RETRY_DELAY, "attempts": ATTEMPTS,
                            "executor_workers": default_executor_workers(), "limits": LIMITS,
                            "after_refusal_timeout": AFTER_REFUSAL_TIMEOUT}
    upstream = slow_upstream(delay=SLOW)
    arrivals = Arrivals(upstream)
    with serve_in_thread(arrivals, ready_timeout=8) as up:
        os.environ["SCORES_URL"] = up.url
        module = d.import_stage("app.py")
        asyncio.run(exercise_app(d, module, up, upstream.state.stats, arrivals))


if __name__ == "__main__":
    Driver.main(main)
