"""Runs a learner's module-09 service for real and reports what happened, as JSON.

    python driver.py APP_DIR

It seeds a SQLite file as the incident found it (course.drill.seed: 60 members with 100.00 of
credit each, one paid order each), starts the co-op's partners (course.drill.partners: the courier,
the farm and the mail service, uvicorn in a thread; they count connections, calls, bookings and
mail), counts every database connection the service checks out (and which task holds it) and every
httpx client it builds, imports app.py twice (two workers of one service: a lock in Python holds in
one of them), serves both with the serving stage, the first under a lag probe on its own event loop
(course.blocking.LagProbe), and replays the incident: a burst on the order page, the delivery slots
one after another, one-field PATCHes, a double click on Pay and three orders paid at once against
one member's credit (the payments alternate between the workers), the box list while the loop is
watched, payments whose receipt cannot be sent or whose booking the courier refuses once, and a
bank statement of STATEMENT_MIB MiB while this process's peak memory is measured, then a statement
with a bad line. Then it stops both workers with SIGTERM and looks at what is still open or
running. It never judges: the checks read the report.

A request's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error").

Report keys (each check names the ones it needs with ``require``):

    settings       this run's numbers: "tracking" (seconds the courier takes to track an order),
                   "farm" (seconds the farm takes), "slots_calls", "pay_clicks", "max_lag" (seconds
                   the loop may be late), "growth_share" (of the statement's size, the most the peak
                   may grow), "book_within" (seconds a paid box has to be booked), "pool" (the
                   service's POOL_SETTINGS)
    basics         {"order", "member", "boxes", "slots", "order_page", "statement"}: POST /orders, then
                   at once GET /members/3, GET /boxes, GET /delivery-slots, GET /orders/{it}, GET
                   /members/3/statement
    bad_input      [answers]: an unknown member, an unknown order, NaN as a member id, an unknown box,
                   an unknown field in a PATCH, a statement that is not CSV
    order_burst    BURST concurrent GET /orders/{1..BURST}: "n", "ok" (200s), "statuses" ({status: count}),
                   "slowest" (seconds), "server_errors" ({text: count} the service raised for them)
    holding        {path: [calls, calls made while the calling task held a database connection]} for
                   every call to a partner during the whole run, by the partner's path
    slots          {"answers": statuses of SLOTS_CALLS GET /delivery-slots one after another,
                   "connections": TCP connections the partners accepted meanwhile, "clients": httpx
                   clients the service built meanwhile}
    patch          {"before", "note", "after_note", "cleared", "after_clear", "together", "after_together"}:
                   member 2 read, PATCH {"note"}, read, PATCH {"phone": null}, read, two PATCHes at once
                   ({"note"} and {"address"}), read
    double_click   {"order", "answers" (PAY_CLICKS pays of one order at once), "debits" (ledger amounts for
                   the order), "credit_before", "credit_after", "total"}
    credit_race    {"answers" (three family boxes of member 30 paid at once, through both workers),
                   "credit_before", "credit_after", "after_refusal" (a small box of that member paid
                   afterwards, and its "credit_after")}
    boxes_lag      {"answers": statuses of LAG_CALLS concurrent GET /boxes, "max_lag": the longest the
                   service's loop was late meanwhile, "health": GET /health sent meanwhile}
    statement      the valid statement of STATEMENT_MIB MiB (after a small one, not reported): its answer,
                   "mib", "rows", "growth_mib" (peak memory during the upload minus the memory just
                   before), "credited" (cents it credits member 1), "credit_change" (member 1's credit
                   around the big upload only)
    bad_statement  a statement with a bad amount on line BAD_LINE: its answer, "line", "credit_change"
    after_bad      a small valid statement sent after it: its answer, "credited", "credit_change"
    after_payment  {"orders": {"no_email", "mail_refused", "courier_refused_once", "plain"} -> order id,
                   "paid": their answers (paid at once, through both workers), "booked_in_time" (all four
                   booked within book_within s of the payments), "seconds" (from the payments until all
                   four were booked, or until the checks stopped waiting)}
    bookings       {label: bookings the courier made for that order, counted after the service stopped}
    receipts       {label: mails the mail service took for that order's member}
    shutdown       {"clients_open": httpx clients never closed, "partner_connections": TCP connections from
                   this process to the partners still established, "db_connections": database connections
                   still open, "tasks": asyncio tasks the service started and left running when its
                   lifespan's shutdown was over (both workers)}
    stops          the serving stage's stop (SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import sqlite3
import time
import traceback
from pathlib import Path

from course.grading.checking import Driver

BURST = 20          # concurrent order pages: the pool has 3 connections, the courier takes TRACKING s
TRACKING = 0.2
FARM = 0.2
SLOTS_CALLS = 5
LAG_CALLS = 4
MAX_LAG = 0.12      # a blocked loop waits FARM s per call; a free one a few ms
PAY_CLICKS = 4
STATEMENT_MIB = 6
GROWTH_SHARE = 1.0  # holding it all costs the file's size at least (several times it, decoded)
BAD_LINE = 1234
BOOK_WITHIN = 4.0
CLIENT_TIMEOUT = 15

COUNTS = {"clients": [], "engines": [], "holders": collections.Counter(), "held_by": {}, "calls": {}}


def current_task():
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def instrument(d: Driver) -> None:
    """Count what the service builds and holds: engines (each connection it checks out, and by which
    task), httpx clients (built in which stage, closed or not), and every call to a partner (was the
    calling task holding a database connection?)."""
    import httpx
    import sqlalchemy.ext.asyncio as sa_async
    import sqlalchemy.ext.asyncio.engine as sa_engine
    from sqlalchemy import event

    from course.probes import ConnectionCounter

    original_engine = sa_engine.create_async_engine

    def create_async_engine(*args, **kwargs):
        engine = original_engine(*args, **kwargs)
        COUNTS["engines"].append(ConnectionCounter(engine))

        # A connection goes back to the pool in whichever task closes the session (AsyncSession's
        # __aexit__ closes it in a shielded task of its own): it is the checking-out task's until then.
        def out(dbapi_connection, *_):
            task = current_task()
            if task is not None:
                COUNTS["holders"][task] += 1
                COUNTS["held_by"][id(dbapi_connection)] = task

        def back(dbapi_connection, *_):
            task = COUNTS["held_by"].pop(id(dbapi_connection), None)
            if task is not None and COUNTS["holders"][task] > 0:
                COUNTS["holders"][task] -= 1

        event.listen(engine.sync_engine, "checkout", out)
        event.listen(engine.sync_engine, "checkin", back)
        return engine

    sa_engine.create_async_engine = create_async_engine
    sa_async.create_async_engine = create_async_engine

    original_init, original_aclose = httpx.AsyncClient.__init__, httpx.AsyncClient.aclose
    original_aexit = httpx.AsyncClient.__aexit__
    original_send = httpx.AsyncClient.send

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        base = str(d.target) + os.sep
        mine = any(f.filename.startswith(base) for f in traceback.extract_stack()[:-1])
        if mine:
            COUNTS["clients"].append({"client": self, "stage": d.current_stage, "closed": False})

    def closed(client) -> None:
        for record in COUNTS["clients"]:
            if record["client"] is client:
                record["closed"] = True

    async def aclose(self):
        closed(self)
        return await original_aclose(self)

    async def __aexit__(self, *args):  # `async with` closes the client without aclose()
        closed(self)
        return await original_aexit(self, *args)

    async def send(self, request, *args, **kwargs):
        if any(record["client"] is self for record in COUNTS["clients"]):
            path = "/".join(request.url.path.split("/")[1:3])
            calls = COUNTS["calls"].setdefault(path, [0, 0])
            calls[0] += 1
            if COUNTS["holders"].get(current_task()):
                calls[1] += 1
        return await original_send(self, request, *args, **kwargs)

    httpx.AsyncClient.__init__ = __init__
    httpx.AsyncClient.aclose = aclose
    httpx.AsyncClient.__aexit__ = __aexit__
    httpx.AsyncClient.send = send


class TasksAtShutdown:
    """An ASGI wrapper that notes the asyncio tasks the app started and left running when its
    lifespan's shutdown is over (uvicorn would then cancel them, mid-work, as the loop closes)."""

    def __init__(self, app) -> None:
        self.app = app
        self.left: list[str] = []

    def __getattr__(self, name: str):  # app.state, app.routes, ... of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        before = set(asyncio.all_tasks())

        async def watched_send(message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                me = asyncio.current_task()
                for task in asyncio.all_tasks():
                    if task not in before and task is not me and not task.done():
                        code = getattr(task.get_coro(), "cr_code", None)
                        self.left.append(f"{task.get_name()} ({code.co_qualname if code else task.get_coro()!r})")
            await send(message)

        await self.app(scope, receive, watched_send)


def credit(db: Path, member_id: int) -> int:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("SELECT credit_cents FROM members WHERE id = ?", (member_id,)).fetchone()[0]
    finally:
        conn.close()


async def place(svc, member_id: int, box: str) -> int | None:
    got = await svc.send("POST", "/orders", json={"member_id": member_id, "box": box})
    return (got.get("json") or {}).get("id") if got["status"] == 201 else None


async def statement_upload(svc, path: Path, name: str) -> dict:
    with path.open("rb") as f:
        return await svc.send("POST", "/imports/statements", files={"file": (name, f, "text/csv")},
                              show=f"POST /imports/statements with {name}", timeout=CLIENT_TIMEOUT)


async def basics(d: Driver, svc) -> None:
    order_id = await place(svc, 3, "small")
    names = ("member", "boxes", "slots", "order_page", "statement")
    answers = await svc.together(svc.send("GET", "/members/3"), svc.send("GET", "/boxes"),
                                 svc.send("GET", "/delivery-slots"), svc.send("GET", f"/orders/{order_id or 3}"),
                                 svc.send("GET", "/members/3/statement"))
    d.report["basics"] = {**dict(zip(names, answers)), "order": {"id": order_id}}
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    picture = await svc.send("POST", "/imports/statements", files={"file": ("picture.png", png, "image/png")})
    d.report["bad_input"] = [*await svc.together(
        svc.send("GET", "/members/9999"),
        svc.send("GET", "/orders/99999"),
        svc.send("POST", "/orders", content='{"member_id": NaN, "box": "small"}',
                 headers={"content-type": "application/json"}),
        svc.send("POST", "/orders", json={"member_id": 3, "box": "crate"}),
        svc.send("PATCH", "/members/3", json={"credit_cents": 10**9})), picture]


async def order_burst(d: Driver, svc) -> None:
    answers = await svc.together(*(svc.send("GET", f"/orders/{k}") for k in range(1, BURST + 1)))
    errors = collections.Counter(a["server_error"] for a in answers if a["server_error"])
    d.report["order_burst"] = {"n": BURST, "statuses": dict(collections.Counter(str(a["status"]) for a in answers)),
                               "ok": sum(1 for a in answers if a["status"] == 200),
                               "slowest": max(a["seconds"] for a in answers), "server_errors": dict(errors)}


async def slots(d: Driver, svc, stats) -> None:
    before_conns, before_clients = stats.connections, len(COUNTS["clients"])
    answers = [(await svc.send("GET", "/delivery-slots"))["status"] for _ in range(SLOTS_CALLS)]
    # the recorder's own connections arrive at the service, never at the partners
    d.report["slots"] = {"answers": answers, "connections": stats.connections - before_conns,
                         "clients": len(COUNTS["clients"]) - before_clients}


async def patches(d: Driver, svc) -> None:
    p = {"before": await svc.send("GET", "/members/2")}
    p["note"] = await svc.send("PATCH", "/members/2", json={"note": "leave it at the back door"})
    p["after_note"] = await svc.send("GET", "/members/2")
    p["cleared"] = await svc.send("PATCH", "/members/2", json={"phone": None})
    p["after_clear"] = await svc.send("GET", "/members/2")
    p["together"] = await svc.together(svc.send("PATCH", "/members/4", json={"note": "ring twice"}),
                                       svc.send("PATCH", "/members/4", json={"address": "9 Mill Street, Leeds LS2"}))
    p["after_together"] = await svc.send("GET", "/members/4")
    d.report["patch"] = p


async def payments(d: Driver, svc, db: Path, workers: tuple) -> None:
    """Every payment goes to one of the two workers in turn: a lock in Python holds in one of them."""
    order_id = await place(svc, 20, "family")
    before = credit(db, 20)
    answers = await svc.together(*(workers[i % 2].send("POST", f"/orders/{order_id}/pay") for i in range(PAY_CLICKS)))
    conn = sqlite3.connect(db, timeout=5)
    try:
        debits = [r[0] for r in conn.execute("SELECT amount_cents FROM ledger WHERE order_id = ?", (order_id,))]
    finally:
        conn.close()
    d.report["double_click"] = {"order": order_id, "answers": answers, "debits": debits, "credit_before": before,
                                "credit_after": credit(db, 20)}

    orders = await asyncio.gather(*(place(svc, 30, "family") for _ in range(3)))
    before = credit(db, 30)
    answers = await svc.together(*(workers[i % 2].send("POST", f"/orders/{o}/pay") for i, o in enumerate(orders)))
    after = credit(db, 30)
    small = await place(svc, 30, "small")
    again = await svc.send("POST", f"/orders/{small}/pay")
    d.report["credit_race"] = {"answers": answers, "credit_before": before, "credit_after": after,
                               "after_refusal": {**again, "credit_after": credit(db, 30)}}


async def boxes_lag(d: Driver, svc, lag) -> None:
    since = lag.mark()
    *answers, health = await svc.together(*(svc.send("GET", "/boxes") for _ in range(LAG_CALLS)),
                                          svc.send("GET", "/health"))
    d.report["boxes_lag"] = {"answers": [a["status"] for a in answers], "max_lag": round(lag.max_lag(since), 3),
                             "health": health}


async def statements(d: Driver, svc, db: Path) -> None:
    from course.drill import write_statement
    from course.probes import peak_rss_mib, reset_peak_rss, rss_mib

    big = write_statement(d.scratch / "statement.csv", size=STATEMENT_MIB * 2**20)
    bad = write_statement(d.scratch / "bad.csv", rows=3000, start=900,
                          bad={BAD_LINE: "2026-11-30,BNK-BAD-1,7,12.50,an amount in pounds, not cents"})
    small = write_statement(d.scratch / "small.csv", rows=40, start=950)
    first = write_statement(d.scratch / "first.csv", rows=40, start=960)
    # A small import first: what any first import costs once (compiled statements, the parser's
    # buffers) is not the file's. Then freed memory goes back to the system, so that the big import
    # cannot hide in what the process had already (glibc keeps freed memory for reuse).
    await statement_upload(svc, first.path, "first.csv")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = credit(db, 1)
    reset_peak_rss()
    base = rss_mib()
    got = await statement_upload(svc, big.path, "statement.csv")
    growth = peak_rss_mib(os.getpid()) - base
    d.report["statement"] = {**got, "mib": round(big.mib, 1), "rows": big.rows, "growth_mib": round(growth, 1),
                             "credited": big.credited.get(1, 0), "credit_change": credit(db, 1) - before}
    before = credit(db, 7)
    got = await statement_upload(svc, bad.path, "bad.csv")
    d.report["bad_statement"] = {**got, "line": BAD_LINE, "credit_change": credit(db, 7) - before}
    before = credit(db, 7)
    got = await statement_upload(svc, small.path, "small.csv")
    d.report["after_bad"] = {**got, "credited": small.credited.get(7, 0), "credit_change": credit(db, 7) - before}


PAID_AFTER = {"no_email": 5, "mail_refused": 8, "courier_refused_once": 9, "plain": 11}  # label -> member


async def pay_for_boxes(d: Driver, svc, stats, workers: tuple) -> None:
    """Four boxes paid at once, through both workers; wait_for_bookings waits for what must follow."""
    orders = {label: await place(svc, member, "small") for label, member in PAID_AFTER.items()}
    stats.refuse_mail_to.add(f"member{PAID_AFTER['mail_refused']}@example.org")
    stats.refuse_first.add(f"HB-{orders['courier_refused_once']}")
    d.report["after_payment"] = {"orders": orders, "started": time.monotonic()}
    answers = await svc.together(*(workers[i % 2].send("POST", f"/orders/{o}/pay")
                                   for i, o in enumerate(orders.values())))
    d.report["after_payment"]["paid"] = dict(zip(orders, answers))


async def after_payments(d: Driver, svc, stats, workers: tuple) -> None:
    await pay_for_boxes(d, svc, stats, workers)
    await wait_for_bookings(d, svc, stats)


async def wait_for_bookings(d: Driver, svc, stats) -> None:
    after = d.report["after_payment"]
    refs = [f"HB-{o}" for o in after["orders"].values()]
    left = BOOK_WITHIN - (time.monotonic() - after["started"])
    after["booked_in_time"] = await asyncio.to_thread(stats.wait_until, lambda s: all(s.booked(r) for r in refs),
                                                      max(0.0, left))
    after["seconds"] = round(time.monotonic() - after.pop("started"), 2)


async def exercise(d: Driver, module, twin, db: Path, stats, partners_port: int) -> None:
    from course.blocking import LagProbe

    first, second = TasksAtShutdown(module.app), TasksAtShutdown(twin.app)
    lag = LagProbe(first, interval=0.01)
    with d.serve(lag, label="the co-op's service") as svc, \
            d.serve(second, label="a second worker of the service") as svc2:
        workers = (svc, svc2)
        with d.stage("requests", limit=60, doing="answering the checks' requests"):
            await basics(d, svc)
            await order_burst(d, svc)      # the pool, alone
            await slots(d, svc, stats)     # connections to the partners, alone
            await boxes_lag(d, svc, lag)   # the event loop, alone
            # Members 2 and 4, 20 and 30, and four others: nothing in common but the database.
            await asyncio.gather(patches(d, svc), payments(d, svc, db, workers),
                                 after_payments(d, svc, stats, workers))
            await statements(d, svc, db)   # memory, alone
    from course.probes import tcp_connections

    d.report["shutdown"] = {
        "clients_open": sum(1 for c in COUNTS["clients"] if not c["closed"]),
        "partner_connections": tcp_connections(remote_port=partners_port),
        "db_connections": sum(e.open for e in COUNTS["engines"]),
        "tasks": first.left + second.left,
    }


def main(d: Driver) -> None:
    from course.drill import partners, seed, service_env
    from course.server import serve_in_thread

    db = d.scratch / "harvest.db"
    seed(db)
    fake = partners()
    stats = fake.state.stats
    stats.delays.update(tracking=TRACKING, farm=FARM)
    d.report["settings"] = {"tracking": TRACKING, "farm": FARM, "slots_calls": SLOTS_CALLS, "max_lag": MAX_LAG,
                            "growth_share": GROWTH_SHARE, "book_within": BOOK_WITHIN, "pay_clicks": PAY_CLICKS}
    instrument(d)
    with serve_in_thread(fake, ready_timeout=8) as up:
        os.environ.update(service_env(up.url, db))
        module = d.import_stage("app.py")
        twin = d.import_stage("app.py", module_name="app_second_worker",
                              doing="importing app.py again, as a second worker process would")
        d.report["settings"]["pool"] = getattr(module, "POOL_SETTINGS", None)
        try:
            asyncio.run(exercise(d, module, twin, db, stats, up.port))
        finally:
            d.report["holding"] = {path: calls for path, calls in COUNTS["calls"].items()}
            orders = d.report.get("after_payment", {}).get("orders", {})
            d.report["bookings"] = {label: stats.booked(f"HB-{o}") for label, o in orders.items()}
            d.report["receipts"] = {label: sum(1 for m in stats.mails if m.get("to") == f"member{member}@example.org")
                                    for label, member in PAID_AFTER.items() if label in orders}


if __name__ == "__main__":
    Driver.main(main)
