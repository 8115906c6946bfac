"""Checks for exercise 06: sync to async.

The learner's app runs once, in a subprocess, under a real uvicorn server with a lag probe on its
event loop, against a slow scoring service that counts what it sees (driver.py); each test below
reads one part of what happened and names one expectation.
"""

from __future__ import annotations

import math

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "06_sync_to_async"
WHAT = "importing app.py and serving it under uvicorn"
DRIVER_TIMEOUT = 90


def burst_text(burst: dict) -> str:
    errors = "; ".join(f"{text} (x{n})" for text, n in burst["errors"].items())
    text = f"statuses {burst['statuses']}" + (f": {errors[:300]}" if errors else "")
    return text + (f"; the server raised {burst['server_errors'][:300]}" if burst.get("server_errors") else "")


def all_answered_ok(burst: dict) -> bool:
    """Every request answered 200 (those a cut burst left unanswered are not counted)."""
    return burst["ok"] + burst["cut"] == burst["n"]


def cut_text(burst: dict) -> str:
    return (f"; the checks stopped waiting then, {burst['cut']} of {burst['n']} requests still unanswered"
            if burst["cut"] else "")


def test_app_runs(report: dict) -> None:
    """app.py imports, starts and answers GET /users/1 with the user and their score"""
    single = require(report, "single")
    expect(single["status"] == 200, called="GET /users/1 (a single request)",
           expected='200 with {"id": 1, "name": "user 1", "score": ...}', got=answer(single),
           hint="read the server's error. An async session needs `await`; asyncio.run() cannot run inside the "
                "server's own event loop: an endpoint awaits instead.")
    expect('"name":"user 1"' in single["body"] and '"score"' in single["body"], called="GET /users/1",
           expected='a body with "name": "user 1" and a "score"', got=single["body"],
           hint="keep the response model Profile as it is.")


def test_missing_user_is_404(report: dict) -> None:
    """A missing user is a 404, not a 500"""
    missing = require(report, "missing")
    expect(missing["status"] == 404, called="GET /users/999", expected="404 with a detail", got=answer(missing),
           hint="`await session.get(User, user_id)` returns None for a missing row: raise HTTPException(404).", todo=2)


def test_retries_after_a_503(report: dict) -> None:
    """When the scoring service answers 503, the app waits and tries again"""
    retry, settings = require(report, "retry", "settings")
    expect(retry["status"] == 200 and retry["attempts"] == 2,
           called="GET /users/77, the scoring service answering its first attempt with 503",
           expected="200, after 2 attempts", got=f"{answer(retry)}; attempts the service saw: {retry['attempts']}",
           hint="keep the retry loop: a 503 means wait, then try again.", todo=4)
    expect(retry["gap"] >= 0.8 * settings["retry_delay"],
           called=f"GET /users/77 (RETRY_DELAY={settings['retry_delay']}), timing the attempts the service saw",
           expected=f"at least {settings['retry_delay']} s between its two attempts: the app waits before it tries again",
           got=f"{retry['gap']:.3f} s", hint="keep the wait between attempts; make it one that does not block.",
           todo=4)
    down = require(report, "down")
    short = [gap for gap in down["gaps"] if gap < 0.8 * settings["retry_delay"]]
    expect(len(down["gaps"]) == settings["attempts"] - 1 and not short,
           called="GET /users/78, the scoring service answering every attempt with 503, timing the attempts it saw",
           expected=f"at least {settings['retry_delay']} s before each of attempts 2 to {settings['attempts']}: "
                    "the error path waits too",
           got=f"{down['attempts']} attempts, seconds between them: {down['gaps']}",
           hint="every attempt after a 503 comes after a wait, the last one too, not only the second.", todo=4)


def test_gives_up_with_a_502(report: dict) -> None:
    """When the scoring service stays unavailable, the app gives up after 3 attempts with a 502"""
    down, settings = require(report, "down", "settings")
    expect(down["status"] == 502 and down["attempts"] == settings["attempts"],
           called="GET /users/78, the scoring service answering every attempt with 503",
           expected=f"502 after {settings['attempts']} attempts",
           got=f"{answer(down)}; attempts the service saw: {down['attempts']}",
           hint="keep ATTEMPTS and the 502 at the end of fetch_score.", todo=4)


def test_burst_takes_about_one_calls_time(report: dict) -> None:
    """50 concurrent requests take about as long as one, not 50 times as long"""
    burst, settings = require(report, "burst", "settings")
    n, one, limit = burst["n"], burst["one"], settings["limits"]["ratio"]
    expect(all_answered_ok(burst), called=f"{n} concurrent GET /users/<id>", expected=f"{n} x 200",
           got=burst_text(burst), hint="see the first failed expectation above.")
    ratio = burst["wall"] / max(one, 1e-3)
    expect(ratio <= limit,
           called=f"{n} concurrent GET /users/<id> (each one calls the scoring service, {settings['slow']} s)",
           expected=f"all {n} within {limit} single requests' time ({limit * one:.2f} s); "
                    f"one after another they take {n}x",
           got=f"{burst['wall']:.2f} s = {ratio:.1f} single requests' time (a single one: {one:.2f} s; "
               f"slowest of the burst {burst['max']:.2f} s){cut_text(burst)}",
           hint="while one request waits, the others must run: every wait (database, HTTP call, sleep) must be "
                "awaited, not blocking, and not queued for the few threads of a thread pool.", todo=3)


def test_calls_reach_the_service_together(report: dict) -> None:
    """The 50 requests' calls to the scoring service run at the same time (no blocking, no thread cap)"""
    burst, settings = require(report, "burst", "settings")
    n, peak = burst["n"], burst["peak"]
    needed = math.ceil(settings["limits"]["peak_share"] * n)
    expect(peak >= needed,
           called=f"{n} concurrent GET /users/<id>, counting the calls the scoring service holds at once",
           expected=f"at least {needed} of {n} calls in flight together (more than any thread pool's 32 or 40 threads)",
           got=f"at most {peak} at once" + (
               " (one at a time: something in the request blocks the event loop)" if peak <= 1 else
               f" (the loop's default executor has {settings['executor_workers']} threads here; "
               "anyio's thread pool 40)" if peak <= 40 else ""),
           hint="a blocking call in `async def` serialises the requests: a sync session or requests.get. Wrapping "
                "the old sync code in run_in_executor / to_thread does not block, but a thread pool caps how many "
                "run at once (the staircase): use async libraries (an async session, httpx.AsyncClient).", todo=1)


def test_retry_waits_do_not_block(report: dict) -> None:
    """Requests waiting to retry do not hold up the others"""
    burst, settings = require(report, "retry_burst", "settings")
    n, share = burst["n"], settings["limits"]["blocked_share"]
    expect(all_answered_ok(burst), called=f"{n} concurrent GET /users/<id>, each first attempt answered 503",
           expected=f"{n} x 200", got=burst_text(burst), hint="see the first failed expectation above.", todo=4)
    waits = n * settings["retry_delay"]
    expect(burst["blocked"] <= share * waits,
           called=f"{n} concurrent GET /users/<id>, each first attempt answered 503 (RETRY_DELAY="
                  f"{settings['retry_delay']}), with a task on the app's loop that asks to wake every 10 ms",
           expected=f"the loop blocked for less than {share * waits:.2f} s in all: the {n} waits "
                    f"({waits:.1f} s if they blocked one after another) overlap",
           got=f"the loop was blocked for {burst['blocked']:.2f} s in all; the {n} requests took {burst['wall']:.2f} s; "
               f"at most {burst['peak']} second attempts reached the service together{cut_text(burst)}",
           hint="a wait between attempts that blocks the event loop holds up every other request: the waits "
                "add up instead of overlapping.", todo=4)


def test_event_loop_never_blocked(report: dict) -> None:
    """The app's event loop is never blocked for long (a lag probe on the server's loop)"""
    slow, burst, retry_burst, settings = require(report, "slow_lookup", "burst", "retry_burst", "settings")
    quiet_limit, burst_limit = settings["limits"]["quiet_lag"], settings["limits"]["burst_lag"]
    expect(slow["max_lag"] <= quiet_limit,
           called=f"a task on the app's own event loop that asks to wake every 10 ms, while a few requests run, "
                  f"one of them for user 90, whose database lookup takes {settings['slow_lookup']} s",
           expected=f"it is never late by more than {quiet_limit} s: the loop runs other code while a "
                    "request waits",
           got=f"late by up to {slow['max_lag']:.2f} s: the loop ran nothing else meanwhile",
           hint="something in the request waits without `await`: a sync session (its query runs in the loop's "
                "thread), requests, time.sleep.", todo=2)
    worst = max(burst["max_lag"], retry_burst["max_lag"])
    expect(worst <= burst_limit,
           called=f"the same probe, during the burst of {burst['n']} and the burst of {retry_burst['n']} retries",
           expected=f"it is never late by more than {burst_limit} s",
           got=f"late by up to {burst['max_lag']:.2f} s during the burst and {retry_burst['max_lag']:.2f} s "
               "during the retries: the loop ran nothing else meanwhile",
           hint="something in the request runs without awaiting: time.sleep, requests, a sync session, or building "
                "a new HTTP client per call (each one loads the TLS certificates).", todo=3)


def test_one_client_reused(report: dict) -> None:
    """One HTTP client is reused: requests do not each open a new connection to the service"""
    seq = require(report, "sequential")
    n = len(seq["statuses"])
    expect(seq["connections"] <= 2 and all(s == 200 for s in seq["statuses"]),
           called=f"{n} GET /users/<id> one after another, counting the new TCP connections they open to the "
                  "scoring service",
           expected="200 each, over at most 2 new connections (one client keeps its connection open for the next call)",
           got=f"statuses {seq['statuses']}, {seq['connections']} new connections",
           hint="a client made per call opens (and closes) a connection per call; make one when the app starts "
                "and share it.", todo=1)


def test_client_closed_on_shutdown(report: dict) -> None:
    """When the app stops, its connections to the scoring service and to the database are closed"""
    after = require(report, "after_shutdown")
    expect(after["established"] == 0, called="stopping the server (its lifespan shutdown runs)",
           expected="0 TCP connections from the app to the scoring service",
           got=f"{after['established']} still open", hint="who closes the shared client when the app stops?", todo=1)
    expect(after["database_files"] == 0, called="stopping the server (its lifespan shutdown runs)",
           expected="0 connections to the SQLite file still open (the engine disposed of)",
           got=f"{after['database_files']} still open",
           hint="an engine keeps a pool of open connections: `await engine.dispose()` when the app stops.", todo=1)


def test_concurrent_requests(report: dict) -> None:
    """Two requests for one user at once both succeed; after a 502, that user's next request succeeds"""
    first, second = require(report, "single", "same")
    expect(first["status"] == 200 and second["status"] == 200 and first["json"] == second["json"],
           called=f"{first['request']} twice, sent at the same moment",
           expected="200 for both, with the same user and score", got=f"{answer(first)}\nand {answer(second)}",
           hint="two requests for one user at once must both be answered: what is one request's own (its session) "
                "is never shared with another.", todo=2)
    down, back, settings = require(report, "down", "after_refusal", "settings")
    second = answer(back) if back["status"] is not None else (
        f"no answer within {settings['after_refusal_timeout']} s ({back['body'].removeprefix('no answer: ').rstrip(': ')})")
    expect(back["status"] == 200,
           called=f"{down['request']} while the scoring service answers every attempt with 503 (it got "
                  f"{down['status']}), then {back['request']} once the service answers again",
           expected="200 for the second one", got=f"{answer(down)}\nthen {second}",
           hint="a request that gives up must leave nothing behind (a lock, a slot of a semaphore, a flag) that "
                "stops the next request for the same user: release it in a `finally`, or use `async with`.", todo=4)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
