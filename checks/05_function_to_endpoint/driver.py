"""Runs a learner's module-05 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file (users with balances and password hashes, and an api_keys table the API
never serves), points PAYMENTS_DB at it, imports app.py, serves it with uvicorn on 127.0.0.1,
sends good payments, injections, domain errors and a batch of bad input, reads the balances back
from the database, and checks whether the server still answers while a request waits for a locked
database. It never judges: the checks read the report.

Report keys (each check names the ones it needs with ``require``):

    lookup            GET /users?email=<a user's email>: {"status", "body", "json", "server_error"}
    lookup_none       the same for an email nobody has
    injections        [{"payload", "status", "body", "server_error", "leaked"}] for GET /users?email=<payload>;
                      leaked: the other users' emails and api secrets found in the body
    payment           POST /payments for user 1 (12.50): the same shape as lookup
    payment_cents     user 1's balance_cents in the database afterwards (seeded 10000)
    money             [{"user", "amount", "status", "json", "server_error"}]: payments with a rounding trap
    money_cents       {"2": cents, "3": cents} in the database afterwards (seeded 2000 and 100)
    domain            {"unknown_user": result, "over_balance": result}; domain_cents: user 4's balance after
    bad               [{"name", "kind", "status", "body", "server_error"}]: bad payments for user 5 (kind: amount,
                      luhn, other); bad_cents: user 5's balance after them (seeded 5000)
    secrets_seen      [{"request", "found"}]: password hashes, the card number and the keys password_hash/cvv
                      found in the responses of the requests above
    event_loop        {"answered_while_locked", "probe_seconds", "statuses", "server_errors"}: with the
                      database locked, a payment and a lookup are sent; 0.5 s later GET /openapi.json
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sqlite3
import time
from pathlib import Path

from course.grading.checking import Driver

CARD = {"number": "4242424242424242", "expiry": "12/30", "cvv": "737"}
USERS = [  # id, name, email, balance_cents
    (1, "Ann", "ann@example.com", 10000),   # the happy payment
    (2, "Bob", "bob@example.com", 2000),    # three payments of 0.10
    (3, "Cho", "cho@example.com", 100),     # a payment of 0.29
    (4, "Dan", "dan@example.com", 500),     # a payment over the balance
    (5, "Eve", "eve@example.com", 5000),    # bad input only: must stay 5000
    (6, "Fay", "fay@example.com", 1000),    # paid while the database is locked
]
HASHES = {uid: f"pbkdf2_sha256$600000${name.lower()}salt$hashOf{name}" for uid, name, _, _ in USERS}
API_SECRET = "sk_live_51HxCourseSecretKey"
CLIENT_TIMEOUT = 8

INJECTIONS = [
    "x' OR '1'='1",
    "x' UNION SELECT id, service, secret, secret, 0 FROM api_keys --",
    "'",
]

NAN_BODY = '{"user_id": 5, "amount": NaN, "card": %s}' % json.dumps(CARD)
INF_BODY = '{"user_id": 5, "amount": Infinity, "card": %s}' % json.dumps(CARD)


def pay(amount, user_id=5, card=CARD) -> dict:
    return {"user_id": user_id, "amount": amount, "card": card}


# (name, kind, body): body is JSON data, or a str sent as it is
BAD = [
    ("amount 0", "amount", pay(0)),
    ("amount -5", "amount", pay(-5)),
    ("amount 0.001 (less than a cent)", "amount", pay(0.001)),
    ("card number 4242424242424241 (fails Luhn)", "luhn", pay(1, card={**CARD, "number": "4242424242424241"})),
    ("card number 1234567812345678 (fails Luhn)", "luhn", pay(1, card={**CARD, "number": "1234567812345678"})),
    ("amount NaN", "other", NAN_BODY),
    ("amount Infinity", "other", INF_BODY),
    ('amount "abc"', "other", pay("abc")),
    ("amount 1e300", "other", pay(1e300)),
    ("amount missing", "other", {"user_id": 5, "card": CARD}),
    ("card missing", "other", {"user_id": 5, "amount": 1}),
    ("card without cvv", "other", pay(1, card={"number": CARD["number"], "expiry": "12/30"})),
    ('card "4242424242424242" (a string, not an object)', "other", pay(1, card=CARD["number"])),
    ("card number with letters", "other", pay(1, card={**CARD, "number": "4242abcd42424242"})),
    ("card number as a JSON number", "other", pay(1, card={**CARD, "number": 4242424242424242})),
    ('cvv "12"', "other", pay(1, card={**CARD, "cvv": "12"})),
    ('expiry "13/99"', "other", pay(1, card={**CARD, "expiry": "13/99"})),
    ("user_id 2**70 (past a 64-bit integer)", "other", {**pay(1), "user_id": 2**70}),
    ('user_id "abc"', "other", {**pay(1), "user_id": "abc"}),
    ("user_id 0", "other", {**pay(1), "user_id": 0}),
    ("user_id missing", "other", {"amount": 1, "card": CARD}),
    ("a JSON list instead of an object", "other", [pay(1)]),
    ("a body that is not JSON", "other", "{user_id: 5"),
]


def seed(db: Path) -> None:
    conn = sqlite3.connect(db)
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


def balances(db: Path) -> dict[int, int]:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return dict(conn.execute("SELECT id, balance_cents FROM users").fetchall())
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


async def exercise_app(d: Driver, module, db: Path) -> None:
    import httpx

    from course.server import serve_in_thread

    with d.stage("startup", limit=10, doing="starting the app (its lifespan, up to its yield)"):
        server_cm = serve_in_thread(module.app, timeout_graceful_shutdown=2, ready_timeout=8)
        server = server_cm.__enter__()
    seen: list[dict] = []
    try:
        with d.stage("requests", limit=30, doing="answering the checks' requests"):
            async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT,
                                         limits=httpx.Limits(max_keepalive_connections=0)) as client:

                async def call(method: str, path: str, body=None, *, look_for=(), **kwargs) -> dict:
                    """One request's result; a failure is recorded, never raised, with the server's own
                    exception when there was one."""
                    before = collections.Counter(server.errors)
                    if body is not None:
                        kwargs["content"] = body if isinstance(body, str) else json.dumps(body)
                        kwargs["headers"] = {"content-type": "application/json"}
                    try:
                        r = await client.request(method, path, **kwargs)
                        result = {"status": r.status_code, "body": r.text[:300],
                                  "leaked": [s for s in look_for if r.status_code == 200 and s in r.text]}
                        try:
                            result["json"] = r.json()
                        except ValueError:
                            result["json"] = None
                        seen.append({"request": f"{method} {path}", "found": secrets_in(r.text, result["json"])})
                    except httpx.HTTPError as exc:
                        result = {"status": None, "body": f"no answer: {type(exc).__name__}: {exc}"[:300], "json": None,
                                  "leaked": []}
                    if result["status"] is None or result["status"] >= 500:
                        await asyncio.sleep(0.02)  # uvicorn logs the exception just after the 500
                    result["server_error"] = server.describe_errors(before)
                    return result

                d.report["lookup"] = await call("GET", "/users", params={"email": "ann@example.com"})
                d.report["lookup_none"] = await call("GET", "/users", params={"email": "nobody@example.com"})
                others = [email for uid, _, email, _ in USERS] + [API_SECRET]
                injections = []
                for payload in INJECTIONS:
                    r = await call("GET", "/users", params={"email": payload}, look_for=others)
                    r["payload"] = payload
                    injections.append(r)
                d.report["injections"] = injections

                d.report["payment"] = await call("POST", "/payments", pay(12.5, user_id=1))
                d.report["payment_cents"] = balances(db)[1]

                money = []
                for user, amount in [(2, 0.1), (2, 0.1), (2, 0.1), (3, 0.29)]:
                    r = await call("POST", "/payments", pay(amount, user_id=user))
                    money.append({"user": user, "amount": amount, **{k: r[k] for k in ("status", "json", "server_error", "body")}})
                d.report["money"] = money
                cents = balances(db)
                d.report["money_cents"] = {"2": cents[2], "3": cents[3]}

                d.report["domain"] = {"unknown_user": await call("POST", "/payments", pay(1, user_id=999)),
                                      "over_balance": await call("POST", "/payments", pay(50, user_id=4))}
                d.report["domain_cents"] = balances(db)[4]

                bad = []
                for name, kind, body in BAD:
                    r = await call("POST", "/payments", body)
                    bad.append({"name": name, "kind": kind, "status": r["status"], "body": r["body"][:200],
                                "server_error": r["server_error"]})
                d.report["bad"] = bad
                d.report["bad_cents"] = balances(db)[5]
                d.report["secrets_seen"] = [s for s in seen if s["found"]]

        with d.stage("locked", limit=15, doing="serving while a request waits for a locked database"):
            d.report["event_loop"] = await locked_database(server, db)
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app (its lifespan after its yield)"):
            server_cm.__exit__(None, None, None)


async def locked_database(server, db: Path) -> dict:
    """Lock the database (BEGIN EXCLUSIVE in another connection), send a payment and a lookup that
    must wait for it, then ask the server for /openapi.json, which needs no database. A server whose
    event loop is free answers at once; one whose loop sits in a blocking database call answers only
    after the lock is released (the lock is held 2.5 s at most)."""
    import httpx

    before = collections.Counter(server.errors)
    async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT,
                                 limits=httpx.Limits(max_keepalive_connections=0)) as client:
        await client.get("/openapi.json")  # built once and cached: the probe below costs nothing
        lock = sqlite3.connect(db, isolation_level=None, timeout=5)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            waiting = [asyncio.create_task(client.post("/payments", json=pay(1, user_id=6))),
                       asyncio.create_task(client.get("/users", params={"email": "fay@example.com"}))]
            await asyncio.sleep(0.5)  # both requests reach the database and wait for the lock
            start = time.perf_counter()
            probe = asyncio.create_task(client.get("/openapi.json"))
            await asyncio.wait({probe}, timeout=2.0)
            answered_while_locked = probe.done() and probe.exception() is None
        finally:
            lock.execute("ROLLBACK") if lock.in_transaction else None
            lock.close()
        await asyncio.wait({probe}, timeout=CLIENT_TIMEOUT)
        probe_seconds = time.perf_counter() - start
        statuses = []
        for task in waiting:
            try:
                statuses.append((await task).status_code)
            except httpx.HTTPError as exc:
                statuses.append(f"no answer: {type(exc).__name__}")
    await asyncio.sleep(0.02)
    return {"answered_while_locked": answered_while_locked, "probe_seconds": round(probe_seconds, 3),
            "statuses": statuses, "server_errors": server.describe_errors(before)}


def main(d: Driver) -> None:
    db = d.scratch / "payments.db"
    seed(db)
    os.environ["PAYMENTS_DB"] = str(db)
    with d.stage("import", limit=10, doing="importing app.py",
                 hint="run `python -c 'import app'` in your exercise folder and read the first error."):
        module = d.import_learner("app.py", needs="app")
    asyncio.run(exercise_app(d, module, db))


if __name__ == "__main__":
    Driver.main(main)
