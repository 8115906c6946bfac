"""Module 09's incident drill: the partners the co-op's service calls, its database as the
incident found it, and a bank statement of any size.

    from course.drill import seed, serve_partners, service_env, write_statement

    seed(db)                                     # members, orders and their ledger
    with serve_partners() as partner:            # the courier, the farm, the mail, in a thread
        env = service_env(partner.url, db)       # HARVEST_* settings for the service
        partner.stats.booked("HB-61")            # what they saw: connections, bookings, mail

**partners** stands in for the three services the co-op's app talks to, each under its own prefix
(the service reads one base URL per partner from its settings):

    GET  /farm/availability            boxes the farm can still pack this week (``delays["farm"]`` s)
    GET  /courier/slots                delivery slots (``delays["slots"]``)
    POST /courier/quotes               {"address"} -> {"fee_cents"} (``delays["quote"]``; held together)
    POST /courier/bookings             {"reference", "address"} -> 201 {"booking"}; Idempotency-Key
    GET  /courier/tracking/{reference} {"reference", "status"} (``delays["tracking"]``)
    POST /mail/messages                {"to", "subject", "text"} -> 202; 422 without a valid "to"

It counts what a client cannot hide (:class:`PartnerStats`): the TCP connections it accepted (a
client port each), the calls per route, the bookings made per reference (a booking sent again
with the same ``Idempotency-Key`` gets the first one back and is not made twice), and the mail it
took. ``stats.refuse_first`` (references) answers the first booking attempt for each with a 503,
as a courier does during a deploy; ``stats.refuse_mail_to`` (addresses) are refused by the mail
service (422: they bounced before). Quotes are held together: each quote is answered once no new
quote has arrived for ``delays["quote"]`` seconds, so quotes sent at the same moment all wait
together even on a busy machine (course.blocking.slow_upstream's ``batch``).

**seed** writes the tables the service finds in production (members, orders, ledger): the
service's own ``create_all`` then leaves them as they are. **write_statement** writes a bank
statement CSV (``booked_on,bank_ref,member_id,amount_cents,memo``) of a given size quickly: a block
of rows formatted once, written again with a new number each time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Mapping

from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel

__all__ = ["service_as_it_went_live", "PartnerStats", "Partners", "partners", "serve_partners", "seed", "service_env", "write_statement",
           "Statement", "BOXES", "DEFAULT_DELAYS", "STATEMENT_HEADER", "MEMBERS", "NO_EMAIL", "FEE_CENTS", "ledger",
           "member", "order", "main"]

BOXES = {"small": 1800, "family": 3200}   # the service's prices, in cents
FEE_CENTS = 450                            # what the courier quotes for a delivery
MEMBERS = 60                               # members 1..60
NO_EMAIL = range(5, MEMBERS + 1, 5)        # members who signed up with a phone number only
STATEMENT_HEADER = "booked_on,bank_ref,member_id,amount_cents,memo\n"
DEFAULT_DELAYS = {"farm": 0.2, "slots": 0.02, "quote": 0.05, "tracking": 0.25, "booking": 0.02, "mail": 0.01}


def service_as_it_went_live(scratch: str | os.PathLike) -> Path:
    """The service as the incident found it: ``exercises/09_incident_drill`` while it is untouched,
    else its committed copy, written into ``scratch`` (``git show HEAD:...``). The learner fixes the
    exercise; the notebook keeps reproducing the incident on the service as it went live."""
    import subprocess

    from course.manifest import ROOT

    folder = ROOT / "exercises" / "09_incident_drill"
    rel = folder.relative_to(ROOT)
    changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", str(rel)],
                             capture_output=True, text=True)
    if changed.returncode == 0 and not changed.stdout.strip():
        return folder
    files = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", "HEAD", "--", str(rel)],
                           capture_output=True, text=True)
    if changed.returncode != 0 or files.returncode != 0 or not files.stdout.strip():
        raise RuntimeError(f"{rel} has been changed and this copy of the course is not a git clone, so the "
                           "service as it went live cannot be restored: `course reset 09` keeps your version in "
                           ".course-backups/ and puts the original back.")
    out = Path(scratch) / "service-as-it-went-live"
    for name in files.stdout.split():
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{name}"], capture_output=True, check=True)
        target = out / Path(name).relative_to(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(shown.stdout)
    return out


@dataclass
class PartnerStats:
    """What the partners saw. Change ``delays`` and ``refuse_first`` at any time."""

    delays: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DELAYS))
    refuse_first: set[str] = field(default_factory=set)
    refuse_mail_to: set[str] = field(default_factory=set)          # addresses the mail service refuses
    peers: set[tuple[str, int]] = field(default_factory=set)       # (host, port) of every connection
    calls: collections.Counter = field(default_factory=collections.Counter)
    attempts: collections.Counter = field(default_factory=collections.Counter)  # booking attempts per reference
    bookings: dict[str, list[str]] = field(default_factory=dict)  # reference -> bookings made for it
    keys: dict[str, str] = field(default_factory=dict)            # Idempotency-Key -> booking
    mails: list[dict] = field(default_factory=list)
    refused_mails: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _quotes: dict[str, Any] = field(default_factory=lambda: {"last": 0.0, "waiting": 0}, repr=False)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (each arrives from a client port of its own)."""
        return len(self.peers)

    def booked(self, reference: str) -> int:
        return len(self.bookings.get(reference, []))

    def wait_until(self, done: Callable[["PartnerStats"], bool], timeout: float) -> bool:
        """Block until ``done(stats)`` holds (it is asked after every booking and mail) or ``timeout``
        seconds have passed; returns whether it holds. Call it from a thread, not from the loop
        that serves the partners."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()


class QuoteIn(BaseModel):
    address: str


class BookingIn(BaseModel):
    reference: str
    address: str | None = None


class MailIn(BaseModel):
    to: str | None = None
    subject: str = ""
    text: str = ""


def partners(stats: PartnerStats | None = None) -> Any:
    """The courier, the farm and the mail service in one FastAPI app; ``app.state.stats`` counts."""
    stats = stats or PartnerStats()
    app = FastAPI(title="The co-op's partners")
    app.state.stats = stats

    @app.middleware("http")
    async def count(request: Request, call_next):
        if request.client is not None:
            stats.peers.add((request.client.host, request.client.port))
        route = request.url.path.split("/")[1:3]
        stats.calls["/".join(route)] += 1
        return await call_next(request)

    @app.get("/farm/availability")
    async def availability() -> dict:
        await asyncio.sleep(stats.delays["farm"])
        return {"small": 40, "family": 25}

    @app.get("/courier/slots")
    async def slots() -> dict:
        await asyncio.sleep(stats.delays["slots"])
        return {"slots": ["Thu 08:00-12:00", "Thu 12:00-16:00", "Fri 08:00-12:00"]}

    @app.post("/courier/quotes")
    async def quote(body: QuoteIn) -> dict:
        # Held until no other quote has arrived for `delay` seconds: quotes sent together wait together.
        q = stats._quotes
        q["last"] = time.monotonic()
        q["waiting"] += 1
        try:
            # a later quote moves the deadline: sleep until it stops moving
            while (left := q["last"] + stats.delays["quote"] - time.monotonic()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(left)
        finally:
            q["waiting"] -= 1
        return {"address": body.address, "fee_cents": FEE_CENTS}

    @app.post("/courier/bookings", status_code=201)
    async def book(body: BookingIn, idempotency_key: Annotated[str | None, Header()] = None) -> dict:
        await asyncio.sleep(stats.delays["booking"])
        stats.attempts[body.reference] += 1
        if body.reference in stats.refuse_first and stats.attempts[body.reference] == 1:
            stats._changed()
            raise HTTPException(503, "the courier is deploying; try again in a moment")
        if idempotency_key is not None and idempotency_key in stats.keys:
            return {"reference": body.reference, "booking": stats.keys[idempotency_key], "again": True}
        made = stats.bookings.setdefault(body.reference, [])
        booking = f"CR-{sum(len(v) for v in stats.bookings.values()) + 1:06d}"
        made.append(booking)
        if idempotency_key is not None:
            stats.keys[idempotency_key] = booking
        stats._changed()
        return {"reference": body.reference, "booking": booking}

    @app.get("/courier/tracking/{reference}")
    async def tracking(reference: str) -> dict:
        await asyncio.sleep(stats.delays["tracking"])
        status = "out for delivery" if stats.bookings.get(reference) else "not booked"
        return {"reference": reference, "status": status}

    @app.post("/mail/messages", status_code=202)
    async def mail(body: MailIn) -> dict:
        await asyncio.sleep(stats.delays["mail"])
        if not body.to or "@" not in body.to or body.to in stats.refuse_mail_to:
            stats.refused_mails += 1
            stats._changed()
            raise HTTPException(422, "a message needs an address to go to" if not body.to else
                                f"{body.to} bounced before: it is on the suppression list")
        stats.mails.append(body.model_dump())
        stats._changed()
        return {"queued": True}

    return app


@dataclass
class Partners:
    """The partners, served: their base URL, port and counters."""

    url: str
    port: int
    stats: PartnerStats


@contextlib.contextmanager
def serve_partners(**delays: float) -> Iterator[Partners]:
    """:func:`partners` under uvicorn in a thread of this process, with counters of their own
    (``delays`` changes some of ``DEFAULT_DELAYS``); stopped when the block ends."""
    from course.server import serve_in_thread

    fake = partners()
    fake.state.stats.delays.update(delays)
    with serve_in_thread(fake) as up:
        yield Partners(up.url, up.port, fake.state.stats)


def service_env(partners_url: str, db: str | os.PathLike) -> dict[str, str]:
    """The service's settings (``HARVEST_*``) for the partners at ``partners_url`` and the SQLite
    file ``db``."""
    return {"HARVEST_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "HARVEST_COURIER_URL": f"{partners_url}/courier", "HARVEST_FARM_URL": f"{partners_url}/farm",
            "HARVEST_MAIL_URL": f"{partners_url}/mail"}


# --- the database as the incident found it -------------------------------------------------------------

SCHEMA = [
    """CREATE TABLE members (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(254),
       phone VARCHAR(32), address VARCHAR(200), note VARCHAR(200), credit_cents INTEGER NOT NULL)""",
    """CREATE TABLE orders (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL REFERENCES members (id),
       box VARCHAR(20) NOT NULL, price_cents INTEGER NOT NULL, fee_cents INTEGER,
       status VARCHAR(10) NOT NULL, booking VARCHAR(40))""",
    """CREATE TABLE ledger (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL REFERENCES members (id),
       order_id INTEGER REFERENCES orders (id), amount_cents INTEGER NOT NULL, bank_ref VARCHAR(40) UNIQUE,
       memo VARCHAR(200))""",
]
STREETS = ("Orchard Lane", "Mill Street", "Beech Road", "Canal Walk", "Station Road", "Hill Rise")


def seed(db: str | os.PathLike, *, members: int = MEMBERS, credit_cents: int = 10_000,
         pending: int = 0) -> None:
    """Members 1..``members`` (every member in ``NO_EMAIL`` has a phone number but no email), each
    with ``credit_cents`` topped up by a bank transfer, and one paid, booked order per member (order
    ``i`` is member ``i``'s). ``pending``: that many pending orders more, for members 1, 2, ..."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            for ddl in SCHEMA:
                conn.execute(ddl)
            for i in range(1, members + 1):
                email = None if i in NO_EMAIL else f"member{i}@example.org"
                address = f"{i} {STREETS[i % len(STREETS)]}, Leeds LS{i % 9 + 1}"
                conn.execute("INSERT INTO members VALUES (?, ?, ?, ?, ?, NULL, ?)",
                             (i, f"Member {i}", email, f"+44 7700 9{i:05d}", address, credit_cents))
                conn.execute("INSERT INTO ledger (member_id, amount_cents, bank_ref, memo) VALUES (?, ?, ?, ?)",
                             (i, credit_cents + BOXES["small"] + FEE_CENTS, f"BNK-SEED-{i:05d}", "opening top-up"))
            for i in range(1, members + 1):
                conn.execute("INSERT INTO orders VALUES (?, ?, 'small', ?, ?, 'paid', ?)",
                             (i, i, BOXES["small"], FEE_CENTS, f"CR-SEED-{i:05d}"))
                conn.execute("INSERT INTO ledger (member_id, order_id, amount_cents, memo) VALUES (?, ?, ?, ?)",
                             (i, i, -(BOXES["small"] + FEE_CENTS), f"box small, order {i}"))
            for k in range(pending):
                conn.execute("INSERT INTO orders (member_id, box, price_cents, status) VALUES (?, 'family', ?, "
                             "'pending')", (k % members + 1, BOXES["family"]))
    finally:
        conn.close()


def _query(db: str | os.PathLike, sql: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def member(db: str | os.PathLike, member_id: int) -> dict:
    """A member's row, read straight from the database."""
    rows = _query(db, "SELECT id, name, email, phone, address, note, credit_cents FROM members WHERE id = ?",
                  (member_id,))
    keys = ("id", "name", "email", "phone", "address", "note", "credit_cents")
    return dict(zip(keys, rows[0])) if rows else {}


def order(db: str | os.PathLike, order_id: int) -> dict:
    rows = _query(db, "SELECT id, member_id, box, price_cents, fee_cents, status, booking FROM orders "
                      "WHERE id = ?", (order_id,))
    keys = ("id", "member_id", "box", "price_cents", "fee_cents", "status", "booking")
    return dict(zip(keys, rows[0])) if rows else {}


def ledger(db: str | os.PathLike, *, order_id: int | None = None, member_id: int | None = None) -> list[int]:
    """The amounts (cents; a debit is negative) booked for an order or a member, in order."""
    if order_id is not None:
        rows = _query(db, "SELECT amount_cents FROM ledger WHERE order_id = ? ORDER BY id", (order_id,))
    else:
        rows = _query(db, "SELECT amount_cents FROM ledger WHERE member_id = ? ORDER BY id", (member_id,))
    return [r[0] for r in rows]


# --- a bank statement -------------------------------------------------------------------------------------

_BLOCK = 1000
_TOKEN = "#####"


@dataclass
class Statement:
    path: Path
    bytes: int
    rows: int
    credited: dict[int, int]   # member id -> cents the statement credits
    seconds: float

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


def _block(members: int, memo_chars: int) -> tuple[str, dict[int, int]]:
    words = ("HARVEST", "SHARE", "TOP-UP", "MEMBER", "STANDING", "ORDER", "THANK", "YOU", "WEEKLY", "BOX")
    rows, credited = [], collections.Counter()
    for i in range(_BLOCK):
        who = i % members + 1
        cents = 500 + (i * 7919) % 4500
        memo = " ".join(words[(i + k) % len(words)] for k in range(memo_chars // 6 + 1))[:memo_chars]
        day = 1 + i % 28
        rows.append(f"2026-11-{day:02d},BNK-{_TOKEN}-{i:03d},{who},{cents},{memo} {who}\n")
        credited[who] += cents
    return "".join(rows), dict(credited)


def write_statement(path: str | os.PathLike, *, size: int | None = None, rows: int | None = None,
                    members: int = MEMBERS, memo_chars: int = 130, bad: Mapping[int, str] | None = None,
                    start: int = 0) -> Statement:
    """A bank statement of about ``size`` bytes (or ``rows`` rows) crediting members 1..``members``;
    ``bad`` maps a line number (the header is line 1) to the text that replaces it; ``start`` numbers
    the transfers' bank references from another point (a second statement, not a copy)."""
    begin = time.perf_counter()
    text, per_block = _block(members, memo_chars)
    block_bytes = len(text.replace(_TOKEN, "00000"))
    if rows is None:
        if size is None:
            raise ValueError("give size= or rows=")
        rows = max(1, round((size - len(STATEMENT_HEADER)) / block_bytes * _BLOCK))
    whole, rest = divmod(rows, _BLOCK)
    credited: collections.Counter = collections.Counter()
    path = Path(path)
    bad = {k: v if v.endswith("\n") else v + "\n" for k, v in (bad or {}).items()}
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(STATEMENT_HEADER)
        for b in range(whole + (1 if rest else 0)):
            numbered = text.replace(_TOKEN, f"{start + b:05d}")
            count = _BLOCK if b < whole else rest
            first = 2 + b * _BLOCK
            lines = None
            if count < _BLOCK or any(first <= k < first + count for k in bad):
                lines = numbered.splitlines(keepends=True)[:count]
                for k, line in bad.items():
                    if first <= k < first + count:
                        lines[k - first] = line
                f.write("".join(lines))
            else:
                f.write(numbered)
            if lines is None:
                credited.update(per_block)
            else:
                for line in lines:
                    parts = line.split(",")
                    if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
                        credited[int(parts[2])] += int(parts[3])
    return Statement(path, path.stat().st_size, rows, dict(credited), time.perf_counter() - begin)


def main(argv: list[str] | None = None) -> None:
    """``python -m course.drill [--seed DB] [--port 8101]``: seed a throwaway database (optional)
    and serve the partners on 127.0.0.1 until Ctrl+C; 8101 is where the service looks by default,
    so ``course probe`` or ``uvicorn app:app`` in another terminal needs only the database."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m course.drill")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--seed", metavar="DB", help="write the incident's database to this SQLite file first")
    args = parser.parse_args(argv)
    if args.seed:
        if Path(args.seed).exists():
            parser.error(f"{args.seed} exists: give a new file (the drill's database is written from scratch)")
        seed(args.seed)
        print(f"seeded {args.seed}: HARVEST_DATABASE_URL=sqlite+aiosqlite:///{Path(args.seed).resolve()}")
    print(f"the partners: http://127.0.0.1:{args.port}/courier, /farm and /mail (Ctrl+C stops them)")
    uvicorn.run(partners(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
