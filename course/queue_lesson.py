"""Harness code for notebook 08 (background work), kept out of the lesson's cells: reading the
demo's SQLite files and logs, polling a status URL, timing what a worker logged.

    from course.queue_lesson import rows, events, poll_states, log_time, outcome, messages_in
    from course.queue_lesson import declare, dead_letters

* :func:`rows` reads a SQLite file that may not exist yet (a task creates its tables on first use).
* :func:`events` reads a work log of ``<time> <event>`` lines.
* :func:`poll_states` polls a status URL and returns the states the client saw, with when.
* :func:`log_time` and :func:`seconds_between` read the timestamps of a Celery worker's log.
* :func:`outcome` waits (boundedly) for a task's SUCCESS or FAILURE and says how long it took.
* :func:`messages_in` decodes what a SQLite broker keeps of every message it ever carried.
* :func:`declare` declares queues on a RabbitMQ broker; :func:`dead_letters` empties a
  dead-letter queue and says what was in it.
* :func:`lines_of` finds the part of a demo file to show (``course.show(path, lines=...)``).
* :func:`post_while_down` sends requests at once while a SQLite broker is down.
* :func:`check_at_most_once` is the challenge's check: a function run as redeliveries would.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["rows", "events", "poll_states", "log_time", "seconds_between", "outcome", "messages_in", "declare",
           "dead_letters", "lines_of", "post_while_down", "check_at_most_once"]

FINAL = ("SUCCESS", "FAILURE")


def rows(db: str | Path, sql: str, *args: Any) -> list[tuple]:
    """Rows from a SQLite database, or [] if the file (or the table) does not exist yet."""
    if not Path(db).exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def events(log: str | Path) -> list[tuple[float, str]]:
    """The lines of a work log, ``<unix time> <event>``: [(time, event), ...]."""
    if not Path(log).exists():
        return []
    lines = Path(log).read_text().splitlines()
    return [(float(t), e) for t, e in (line.split(" ", 1) for line in lines)]


def poll_states(url: str, *, timeout: float = 20.0, every: float = 0.05) -> list[tuple[float, str]]:
    """GET a task's status URL until the task has an outcome (or ``timeout``); the distinct states
    seen, each with the seconds since the first GET."""
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = httpx.get(url).json()["state"]
        if not seen or seen[-1][1] != state:
            seen.append((round(time.monotonic() - start, 2), state))
        if state in FINAL:
            break
        time.sleep(every)
    return seen


def log_time(log: str, text: str, *, nth: int = 0) -> float:
    """When a Celery worker logged the ``nth`` line containing ``text`` (its timestamp, as Unix
    time). The worker's lines start ``[2026-12-07 15:03:24,011: ...``."""
    found = [line for line in log.splitlines() if text in line]
    if len(found) <= nth:
        raise LookupError(f"the worker logged {len(found)} line(s) with {text!r}, not {nth + 1}")
    line = found[nth]
    return time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + int(line[21:24]) / 1000


def seconds_between(log: str, first: str, then: str) -> float:
    """Seconds from the worker's first line containing ``first`` to its first containing ``then``."""
    return round(log_time(log, then) - log_time(log, first), 2)


def outcome(result: Any, *, within: float, every: float = 0.05) -> tuple[str, float]:
    """Wait up to ``within`` seconds for a Celery result to reach SUCCESS or FAILURE. Returns the
    state then (an unfinished one if time ran out) and the seconds waited. Never raises for time."""
    start = time.monotonic()
    while result.state not in FINAL and time.monotonic() - start < within:
        time.sleep(every)
    return result.state, round(time.monotonic() - start, 2)


def messages_in(broker_db: str | Path) -> list[dict]:
    """Every message a SQLite broker holds, delivered or not (kombu marks a delivered message
    invisible and keeps it): ``{"visible", "task", "id", "args"}``."""
    found = []
    for visible, payload in rows(broker_db, "SELECT visible, payload FROM kombu_message ORDER BY id"):
        message = json.loads(payload)
        body = json.loads(base64.b64decode(message["body"]))  # Celery's protocol 2: [args, kwargs, embed]
        headers = message.get("headers", {})
        found.append({"visible": bool(visible), "task": headers.get("task"), "id": headers.get("id"),
                      "args": body[0]})
    return found


def declare(broker: Any, queues: list) -> None:
    """Declare kombu ``Queue`` objects (with their arguments) on the broker, before anyone sends to
    them: RabbitMQ refuses a second declaration with other arguments, and drops what is
    dead-lettered to a queue that does not exist."""
    import kombu

    with kombu.Connection(broker.url) as conn:
        for queue in queues:
            queue(conn.default_channel).declare()


def dead_letters(broker: Any, queue: str, *, at_least: int = 1, timeout: float = 5.0) -> list[tuple[str, int, str]]:
    """Take the messages out of the RabbitMQ queue ``queue`` (waiting up to ``timeout`` seconds for
    ``at_least`` of them: a worker's reject travels on its own connection): (task, retries, why)."""
    import kombu

    found: list[tuple[str, int, str]] = []
    deadline = time.monotonic() + timeout
    with kombu.Connection(broker.url) as conn:
        channel = conn.channel()
        while True:
            message = channel.basic_get(queue, no_ack=True)
            if message is not None:
                death = message.headers["x-death"][0]
                found.append((message.headers["task"], message.headers["retries"], death["reason"]))
            elif len(found) >= at_least or time.monotonic() > deadline:
                return found
            else:
                time.sleep(0.05)


def lines_of(path: str | Path, first: str | None = None, before: str | None = None) -> tuple[int, int]:
    """Line numbers for ``course.show(path, lines=...)``: from the first line containing ``first``
    (or the top) to the line before the next one containing ``before`` (or the end)."""
    lines = Path(path).read_text().splitlines()
    start = 1 if first is None else next(i for i, line in enumerate(lines, 1) if first in line)
    stop = len(lines)
    if before is not None:
        stop = next(i for i, line in enumerate(lines, 1) if i > start and before in line) - 1
    while stop > start and not lines[stop - 1].strip():
        stop -= 1
    return start, stop


async def post_while_down(broker: Any, url: str, paths: list[str], json: Any) -> list[int]:
    """POST ``json`` to each of ``paths`` at once while the SQLite ``broker`` is down
    (:func:`course.queues.broker_down`); the status codes, in order. The broker is back on return."""
    import asyncio

    from course.queues import broker_down

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        with broker_down(broker):
            answers = await asyncio.gather(*(client.post(path, json=json) for path in paths))
    return [a.status_code for a in answers]


def check_at_most_once(send: Any, fresh_env: dict[str, str], count: Any) -> dict[str, int]:
    """A challenge's check: with the environment ``fresh_env`` (fresh databases), run ``send(key)``
    as redeliveries would: twice in a row for "c-1", twice at the same moment for "c-2" (two threads
    released together), once for "c-3"; then ``count()`` the effects ({key: n}) and assert one per
    key."""
    import threading

    from course.harness import patched_env

    with patched_env(**fresh_env):
        send("c-1")
        send("c-1")  # a redelivery after a crash
        barrier = threading.Barrier(2)

        def overlapping() -> None:
            barrier.wait()
            send("c-2")

        both = [threading.Thread(target=overlapping) for _ in range(2)]  # a redelivery mid-run
        for t in both:
            t.start()
        for t in both:
            t.join(20)
        send("c-3")
        counted = count()
    print("effects per key:", counted)
    assert counted == {"c-1": 1, "c-2": 1, "c-3": 1}, f"expected one per key, got {counted}"
    return counted
