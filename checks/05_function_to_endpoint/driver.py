"""Runs a learner's module-05 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file (users with balances and password hashes, and an api_keys table the API
never serves), points PAYMENTS_DB at it, imports app.py, serves it with uvicorn on 127.0.0.1,
sends good payments, injections, domain errors, a batch of bad input, a payment and a lookup for
one user at once, and a refused payment followed by a valid one, reads the balances back from the
database, and checks whether the server still answers while a request waits for a locked
database. It never judges: the checks read the report.

Every request's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error"); a payment's also has "sent" (the
body sent: JSON data, or the text of a body that is not JSON).

Report keys (each check names the ones it needs with ``require``):

    seeded            {"<id>": {"name", "email", "cents"}}: the users as seeded (balance_cents)
    lookup            GET /users?email=<user 1's email>
    lookup_none       the same for an email nobody has
    injections        [answer + {"payload", "leaked"}] for GET /users?email=<payload>; leaked: the other
                      users' emails and the api secret found in a 200's body
    wildcards         [answer + {"payload"}] for GET /users?email=<payload> with LIKE's wildcards (%, _)
    limits            {"over": 1000000.01, "largest": 1000000 (both for user 10, who holds 2 000 000.00), "cents":
                      user 10's balance afterwards}
    payment           POST /payments for user 1 (12.50); payment_cents: user 1's balance_cents afterwards
    money             payments with a rounding trap (0.10 three times for user 2, 0.29 for user 3);
                      money_cents: {"2": cents, "3": cents} in the database afterwards
    domain            {"unknown_user", "over_balance"} (user 999; 50.00 from user 4); domain_cents: user 4's
                      balance afterwards
    bad               [answer + {"sent", "name", "kind"}]: bad payments for user 5 (kind: amount, luhn, other);
                      bad_cents: user 5's balance afterwards
    together          {"answers": [a payment for user 7 (10.00), a lookup of user 7] sent at once, "cents": user 7's
                      balance afterwards}
    after_refusal     {"answers": [a card failing Luhn, more than the balance, a valid payment], all for user 7,
                      one after the other; "cents_before", "cents_after": user 7's balance around them}
    secrets_seen      [{"request", "found"}]: password hashes, the card number and the keys password_hash/cvv/card
                      found in the answers to the requests above
    event_loop        the database locked (BEGIN EXCLUSIVE in another connection), a payment and a lookup sent;
                      once they wait for the lock, GET /openapi.json (no database): {"answered_while_locked",
                      "probe" (its answer), "waiting" (the two answers, after the lock was released),
                      "loop_waited" (the server's event loop itself called the database while it was locked),
                      "lock_hold" (seconds the probe may take while the lock is held)}
    burst, burst_partial
                      payments sent at once for one user (ten of 60.00, six of 30.00, from 100.00), alternately
                      to the app and to a second worker (app.py imported again), through the write gate
                      (course.grading.writegate: every payment reads before any writes): {"answers", "waited",
                      "finished_first", "all_reached", "loop_blocked", "held", "user", "amount", "cents" (the
                      balance afterwards)}
    drain             {"answers": [a payment of exactly what burst_partial left to user 9, then one of 0.01],
                      "cents_before", "cents" (user 9's balance afterwards)}
    stops             the serving stage's stop (SIGTERM), for each worker: see course.grading.serving
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from pathlib import Path

from course.grading.checking import Driver
from course.grading.writegate import WriteGate

CARD = {"number": "4242424242424242", "expiry": "12/30", "cvv": "737"}
USERS = [  # id, name, email, balance_cents
    (1, "Ann", "ann@example.com", 10000),   # the happy payment
    (2, "Bob", "bob@example.com", 2000),    # three payments of 0.10
    (3, "Cho", "cho@example.com", 100),     # a payment of 0.29
    (4, "Dan", "dan@example.com", 500),     # a payment over the balance
    (5, "Eve", "eve@example.com", 5000),    # bad input only: must stay 5000
    (6, "Fay", "fay@example.com", 1000),    # paid while the database is locked
    (7, "Gus", "gus@example.com", 3000),    # two payments at once, then a refused and a valid one
    (8, "Hal", "hal@example.com", 10000),   # ten payments of 60.00 at once: one fits
    (9, "Ivy", "ivy@example.com", 10000),   # six payments of 30.00 at once: three fit; then exactly what is left
    (10, "Jo", "jo@example.com", 200_000_000),  # the largest payment, and one cent more
]
BURSTS = [  # (key, user, amount, how many at once): every payment reads before any of them writes
    ("burst", 8, 60, 10),
    ("burst_partial", 9, 30, 6),
]
HASHES = {uid: f"pbkdf2_sha256$600000${name.lower()}salt$hashOf{name}" for uid, name, _, _ in USERS}
API_SECRET = "sk_live_51HxCourseSecretKey"
LOCK_HOLD = 2.0     # seconds the probe may take while the database is locked
REACH_LIMIT = 3.0   # seconds to wait for the app's requests to reach the locked database

INJECTIONS = [
    "x' OR '1'='1",
    "x' UNION SELECT id, service, secret, secret, 0 FROM api_keys --",
    "'",
]
# Characters that mean something to SQL's LIKE without any quote: a lookup by email must not widen.
WILDCARDS = ["%", "%@example.com", "_nn@example.com", "ann@example.co_"]


def pay(amount, user_id=5, card=CARD) -> dict:
    return {"user_id": user_id, "amount": amount, "card": card}


# (name, kind, body): body is JSON data (NaN and Infinity written as JavaScript does), or a str sent as it is
BAD = [
    ("amount 0", "amount", pay(0)),
    ("amount -5", "amount", pay(-5)),
    ("amount 0.001 (less than a cent)", "amount", pay(0.001)),
    ("card number 4242424242424241 (fails Luhn)", "luhn", pay(1, card={**CARD, "number": "4242424242424241"})),
    ("card number 1234567812345678 (fails Luhn)", "luhn", pay(1, card={**CARD, "number": "1234567812345678"})),
    ("amount NaN", "other", pay(float("nan"))),
    ("amount Infinity", "other", pay(float("inf"))),
    ('amount "abc"', "other", pay("abc")),
    ("amount 1e300", "other", pay(1e300)),
    ("amount missing", "other", {"user_id": 5, "card": CARD}),
    ("card missing", "other", {"user_id": 5, "amount": 1}),
    ("card without cvv", "other", pay(1, card={"number": CARD["number"], "expiry": "12/30"})),
    ('card "4242424242424242" (a string, not an object)', "other", pay(1, card=CARD["number"])),
    ("card number with letters", "other", pay(1, card={**CARD, "number": "4242abcd42424242"})),
    ("card number with spaces", "other", pay(1, card={**CARD, "number": "4242 4242 4242 4242"})),
    ("card number as a JSON number", "other", pay(1, card={**CARD, "number": 4242424242424242})),
    ('cvv "12"', "other", pay(1, card={**CARD, "cvv": "12"})),
    ('expiry "13/99"', "other", pay(1, card={**CARD, "expiry": "13/99"})),
    ("user_id 2**70 (past a 64-bit integer)", "other", {**pay(1), "user_id": 2**70}),
    ("user_id 2**63 (one past the largest 64-bit integer)", "other", {**pay(1), "user_id": 2**63}),
    ('user_id "18446744073709551616" (2**64, as a string)', "other", {**pay(1), "user_id": str(2**64)}),
    ("user_id 1e19 (a float past 64 bits)", "other", {**pay(1), "user_id": 1e19}),
    ("user_id -1", "other", {**pay(1), "user_id": -1}),
    ("user_id 5.5", "other", {**pay(1), "user_id": 5.5}),
    ("user_id true", "other", {**pay(1), "user_id": True}),
    ('user_id "5" (a string)', "other", {**pay(1), "user_id": "5"}),
    ('user_id "abc"', "other", {**pay(1), "user_id": "abc"}),
    ("user_id 0", "other", {**pay(1), "user_id": 0}),
    ("user_id missing", "other", {"amount": 1, "card": CARD}),
    ("a JSON list instead of an object", "other", [pay(1)]),
    ('a JSON string instead of an object', "other", "\"a payment\""),
    ("a JSON number instead of an object", "other", "5"),
    ("JSON null instead of an object", "other", "null"),
    ("JSON true instead of an object", "other", "true"),
    ("an empty body", "other", ""),
    ("a body that is not JSON", "other", "{user_id: 5"),
]

_connect = sqlite3.connect  # the driver's own connections, never watched


def seed(db: Path) -> None:
    conn = _connect(db)
    try:
        with conn:
            conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, "
                         "password_hash TEXT NOT NULL, balance_cents INTEGER NOT NULL)")
            conn.execute("CREATE TABLE api_keys (id INTEGER PRIMARY KEY, service TEXT NOT NULL, secret TEXT NOT NULL)")
            conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                             [(uid, name, email, HASHES[uid], cents) for uid, name, email, cents in USERS])
            conn.execute("INSERT INTO api_keys VALUES (1, 'card-processor', ?)", (API_SECRET,))
    finally:
        conn.close()


def balance(db: Path, user_id: int) -> int:
    conn = _connect(db, timeout=5)
    try:
        return conn.execute("SELECT balance_cents FROM users WHERE id = ?", (user_id,)).fetchone()[0]
    finally:
        conn.close()


def secrets_in(text: str, parsed) -> list[str]:
    found = [f"user {uid}'s password_hash" for uid, h in HASHES.items() if h in text]
    if CARD["number"] in text:
        found.append("the card number")
    keys: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, dict):
            keys.update(k for k in value if k in ("password_hash", "cvv", "card"))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(parsed)
    return found + [f'a "{k}" key' for k in sorted(keys)]


class LockWatch:
    """Which threads of the app entered a database call that needs the lock while the driver holds
    it. Every SQLite connection opened after :meth:`install` (sqlite3, SQLAlchemy's pysqlite,
    aiosqlite: all call sqlite3.connect) is made with a connection class whose execute methods
    (its cursors' too) report the thread that calls them. A statement that needs the lock, called
    while the lock is held, cannot return before it is released: its thread waits for the lock
    (SQLite's busy timeout), in preparing the statement or in running it."""

    FREE = ("COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE")  # statements that need no lock

    def __init__(self) -> None:
        self.armed = False
        self.threads: set[int] = set()
        self._cond = threading.Condition()

    def install(self) -> None:
        import sqlite3.dbapi2 as dbapi2

        watch = self

        def watched(method):
            def call(self, sql, *args, **kwargs):
                watch.called(sql)
                return method(self, sql, *args, **kwargs)
            return call

        class Cursor(sqlite3.Cursor):
            execute = watched(sqlite3.Cursor.execute)
            executemany = watched(sqlite3.Cursor.executemany)
            executescript = watched(sqlite3.Cursor.executescript)

        class Connection(sqlite3.Connection):
            execute = watched(sqlite3.Connection.execute)
            executemany = watched(sqlite3.Connection.executemany)
            executescript = watched(sqlite3.Connection.executescript)

            def cursor(self, factory=Cursor):
                return super().cursor(factory)

        def connect(*args, **kwargs):
            kwargs.setdefault("factory", Connection)  # an app's own factory wins (and is not watched)
            return _connect(*args, **kwargs)

        sqlite3.connect = dbapi2.connect = connect

    def called(self, statement) -> None:
        words = str(statement).upper().split()
        if not self.armed or not words or words[0] in self.FREE or (
                words[0] == "BEGIN" and not {"IMMEDIATE", "EXCLUSIVE"} & set(words)):  # a deferred BEGIN
            return
        with self._cond:
            self.threads.add(threading.get_ident())
            self._cond.notify_all()

    def wait(self, n: int, loop_thread: int | None, timeout: float) -> bool:
        """Until ``n`` threads wait for the lock, or the server's event loop itself does (then no
        other request can reach the database before the lock is released)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.threads) >= n or loop_thread in self.threads, timeout)


def shown(body) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    return "POST /payments " + text.replace(json.dumps(CARD), "{a valid card}")


async def exercise_app(d: Driver, module, twin, db: Path, watch: LockWatch, gate) -> None:
    seen: list[dict] = []

    def looked_at(r: dict) -> dict:
        text = r["body"] + json.dumps(r["json"])
        found = secrets_in(text, r["json"])
        if found:
            seen.append({"request": r["request"], "found": found})
        return r

    async def looked_at_later(request) -> dict:
        return looked_at(await request)

    async def payment(svc, body) -> dict:
        kwargs = ({"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str)
                  else {"json": body})
        return {**looked_at(await svc.send("POST", "/payments", show=shown(body), **kwargs)), "sent": body}

    with d.serve(module.app) as svc:
        with d.stage("requests", limit=30, doing="answering the checks' requests"):
            d.report["lookup"] = looked_at(await svc.send("GET", "/users", params={"email": USERS[0][2]}))
            d.report["lookup_none"] = looked_at(await svc.send("GET", "/users",
                                                               params={"email": "nobody@example.com"}))
            others = [email for _, _, email, _ in USERS] + [API_SECRET]
            injections = []
            for payload in INJECTIONS:
                r = looked_at(await svc.send("GET", "/users", params={"email": payload}))
                text = r["body"] + json.dumps(r["json"])
                injections.append({**r, "payload": payload,
                                   "leaked": [s for s in others if r["status"] == 200 and s in text]})
            d.report["injections"] = injections
            d.report["wildcards"] = [{**looked_at(await svc.send("GET", "/users", params={"email": w})), "payload": w}
                                     for w in WILDCARDS]

            d.report["payment"] = await payment(svc, pay(12.5, user_id=1))
            d.report["payment_cents"] = balance(db, 1)
            d.report["money"] = [await payment(svc, pay(amount, user_id=user))
                                 for user, amount in [(2, 0.1), (2, 0.1), (2, 0.1), (3, 0.29)]]
            d.report["money_cents"] = {"2": balance(db, 2), "3": balance(db, 3)}
            d.report["domain"] = {"unknown_user": await payment(svc, pay(1, user_id=999)),
                                  "over_balance": await payment(svc, pay(50, user_id=4))}
            d.report["domain_cents"] = balance(db, 4)
            d.report["bad"] = [{**await payment(svc, body), "name": name, "kind": kind} for name, kind, body in BAD]
            d.report["bad_cents"] = balance(db, 5)
            d.report["limits"] = {"over": await payment(svc, pay("1000000.01", user_id=10)),
                                  "largest": await payment(svc, pay(1_000_000, user_id=10)),
                                  "cents": balance(db, 10)}

            # A payment and a lookup for the same user at the same moment.
            lookup = svc.send("GET", "/users", params={"email": USERS[6][2]})
            d.report["together"] = {"answers": await svc.together(payment(svc, pay(10, user_id=7)),
                                                                  looked_at_later(lookup)),
                                    "cents": balance(db, 7)}
            before = balance(db, 7)
            refused = [await payment(svc, pay(1, user_id=7, card={**CARD, "number": "4242424242424241"})),
                       await payment(svc, pay(before, user_id=7))]  # 100 times the balance
            d.report["after_refusal"] = {"answers": [*refused, await payment(svc, pay(2.5, user_id=7))],
                                         "cents_before": before, "cents_after": balance(db, 7)}
            d.report["secrets_seen"] = seen

        with d.stage("locked", limit=LOCK_HOLD + REACH_LIMIT + 10,
                     doing="serving while a request waits for a locked database"):
            d.report["event_loop"] = await locked_database(svc, db, watch)

        # Payments at once for one user, alternately through each of two workers, every one of them
        # reading before any writes (the write gate holds SQLite's write lock until all wait for it).
        with d.serve(twin.app, label="the second worker") as svc2:
            with d.stage("bursts", limit=2 * REACH_LIMIT + 20, doing="taking payments sent at the same moment"):
                for key, user, amount, n in BURSTS:
                    burst = await gate.burst(db, [payment((svc, svc2)[i % 2], pay(amount, user_id=user))
                                                  for i in range(n)],
                                             loop_threads=[svc.server.thread.ident, svc2.server.thread.ident])
                    d.report[key] = {**burst, "user": user, "amount": amount, "cents": balance(db, user)}
                # Then exactly what is left of user 9's balance, then one cent more.
                left = balance(db, 9)
                d.report["drain"] = {"answers": [await payment(svc, pay(left / 100, user_id=9)),
                                                 await payment(svc, pay(0.01, user_id=9))],
                                     "cents_before": left, "cents": balance(db, 9)}


async def locked_database(svc, db: Path, watch: LockWatch) -> dict:
    """Lock the database (BEGIN EXCLUSIVE in another connection), send a payment and a lookup, wait
    until they wait for the lock, then ask the server for /openapi.json, which needs no database. A
    server whose event loop is free answers at once; one whose loop sits in a blocking database call
    answers only after the lock is released (it is held LOCK_HOLD s at most)."""
    await svc.send("GET", "/openapi.json")  # built once and cached: the probe below costs nothing
    lock = _connect(db, isolation_level=None, timeout=5)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        watch.armed = True
        waiting = [asyncio.create_task(svc.send("POST", "/payments", json=pay(1, user_id=6), show=shown(pay(1, 6)))),
                   asyncio.create_task(svc.send("GET", "/users", params={"email": USERS[5][2]}))]
        # Until both wait for the lock, or the server's loop does (it then takes no other request).
        await asyncio.to_thread(watch.wait, len(waiting), svc.server.thread.ident, REACH_LIMIT)
        watch.armed = False
        loop_waited = svc.server.thread.ident in watch.threads
        probe = asyncio.create_task(svc.send("GET", "/openapi.json"))
        await asyncio.wait({probe}, timeout=LOCK_HOLD)
        answered_while_locked = probe.done() and probe.result()["status"] is not None
    finally:
        watch.armed = False
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    return {"answered_while_locked": answered_while_locked, "probe": await probe,
            "waiting": [await task for task in waiting], "loop_waited": loop_waited, "lock_hold": LOCK_HOLD}


def main(d: Driver) -> None:
    db = d.scratch / "payments.db"
    seed(db)
    d.report["seeded"] = {str(uid): {"name": name, "email": email, "cents": cents}
                          for uid, name, email, cents in USERS}
    watch = LockWatch()
    watch.install()
    gate = WriteGate()
    gate.install()
    os.environ["PAYMENTS_DB"] = str(db)
    module = d.import_stage("app.py")
    # A second worker, as `uvicorn --workers 2` starts one: app.py imported again, with its own app,
    # engine and module state (a lock in Python holds in one worker only).
    twin = d.import_stage("app.py", module_name="app_second_worker")
    asyncio.run(exercise_app(d, module, twin, db, watch, gate))


if __name__ == "__main__":
    Driver.main(main)
