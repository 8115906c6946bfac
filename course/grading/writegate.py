"""A burst whose requests all read before any of them writes: SQLite's write lock held by the driver
until every request waits for it, then released. The interleaving real traffic produces now and
then, made certain, so a race in the learner's code shows on every run, not one in three.

    gate = WriteGate()
    gate.install()                     # in main(), before the learner's app is imported
    ...
    burst = await gate.burst(db, [svc.send("POST", "/payments", json=p) for p in payments],
                             loop_threads=[svc.server.thread.ident])

``burst["answers"]`` are the answers in order; ``burst["waited"]`` how many requests were waiting
for the lock when it was released, ``burst["finished_first"]`` how many had finished without
waiting (they wrote nothing, or were refused before writing), ``burst["loop_blocked"]`` whether a
server's event loop itself called the database (a blocking driver in ``async def``: then no other
request of that server can reach the database until the lock is released).

How a request is seen waiting: every SQLite connection opened after :meth:`install` (sqlite3,
SQLAlchemy's pysqlite, aiosqlite: all call ``sqlite3.connect``) gets a trace callback, which SQLite
calls in the thread that runs a statement, as the statement starts and before it takes any lock.
A statement that needs the write lock (INSERT, UPDATE, DELETE, REPLACE, BEGIN IMMEDIATE/EXCLUSIVE,
a write through WITH) and starts while the driver holds it cannot finish before it is released:
SQLite's busy timeout makes its thread wait. Readers are not blocked (the driver holds a RESERVED lock, or
the WAL write lock), so a request can read what it likes before it writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Iterable

__all__ = ["WriteGate", "REACH_LIMIT"]

REACH_LIMIT = 3.0  # seconds to wait for the requests to reach the locked database
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def needs_write_lock(statement: Any) -> bool:
    words = str(statement).upper().replace("(", " ").split()
    if not words:
        return False
    if words[0] == "BEGIN":
        return bool({"IMMEDIATE", "EXCLUSIVE"} & set(words[:2]))
    if words[0] == "WITH":
        return any(w in WRITES for w in words)
    return words[0] in WRITES


class WriteGate:
    """See the module's docstring."""

    def __init__(self) -> None:
        self.armed = False
        self.threads: set[int] = set()
        self.finished = 0
        self._cond = threading.Condition()
        self._connect: Any = None

    def install(self) -> None:
        """Watch every SQLite connection opened from now on: each gets a trace callback (SQLite calls it
        when a statement starts to run, before it waits for a lock), so a connection class of the
        app's own, or another watcher's, still works. An app that sets its own trace callback is not
        watched: its requests are then waited for until :data:`REACH_LIMIT`."""
        import sqlite3.dbapi2 as dbapi2

        gate, original = self, sqlite3.connect
        self._connect = original

        def connect(*args: Any, **kwargs: Any) -> Any:
            conn = original(*args, **kwargs)
            conn.set_trace_callback(gate._called)
            return conn

        sqlite3.connect = dbapi2.connect = connect  # type: ignore[assignment]

    def _called(self, statement: Any) -> None:
        if self.armed and needs_write_lock(statement):
            with self._cond:
                self.threads.add(threading.get_ident())
                self._cond.notify_all()

    def _done(self, _task: Any) -> None:
        with self._cond:
            self.finished += 1
            self._cond.notify_all()

    async def burst(self, db: str | Path, requests: Iterable[Awaitable[dict]], *,
                    loop_threads: Iterable[int | None] = (), reach_limit: float = REACH_LIMIT) -> dict[str, Any]:
        """Hold the write lock of ``db``, start ``requests`` at once, release the lock when each one
        waits for it or has finished (or a server's loop waits, or ``reach_limit`` passes), and
        return their answers with what the gate saw."""
        connect = self._connect or sqlite3.connect
        lock = connect(str(db), isolation_level=None, timeout=10, check_same_thread=False)
        loops = {t for t in loop_threads if t is not None}
        start = time.monotonic()
        try:
            lock.execute("BEGIN IMMEDIATE")
            with self._cond:
                self.threads, self.finished, self.armed = set(), 0, True
            tasks = [asyncio.ensure_future(r) for r in requests]
            for task in tasks:
                task.add_done_callback(self._done)
            n = len(tasks)

            def ready() -> bool:
                return len(self.threads) + self.finished >= n or bool(loops & self.threads)

            def wait() -> bool:
                with self._cond:
                    return self._cond.wait_for(ready, reach_limit)

            all_reached = await asyncio.to_thread(wait)
            with self._cond:
                self.armed = False
                waited, finished_first = len(self.threads), self.finished
                loop_blocked = bool(loops & self.threads)
        finally:
            self.armed = False
            if lock.in_transaction:
                lock.execute("ROLLBACK")
            lock.close()
        held = round(time.monotonic() - start, 3)
        answers = [await task for task in tasks]
        return {"answers": answers, "waited": waited, "finished_first": finished_first, "all_reached": all_reached,
                "loop_blocked": loop_blocked, "held": held}
