"""Lesson plumbing for module 05 (from a Python function to an endpoint): the transfer service's
database, on SQLite or PostgreSQL, and the balances read back straight from it.

    from course.transfers import seed, balance, ACCOUNTS

    url = seed(db)                     # a SQLite file: accounts 1-5, an api_keys table, idempotency_keys
    balance(db, 1)                     # 10000: cents, as the database holds them
    url = await seed_pg(pg.url)        # the same tables in a PostgreSQL sandbox (course.databases)
    await balance_pg(pg.url, 1)
    await until_idle(server)           # every request the server took has finished (a client may have given up)
    with workers("atomic:app", app_dir=DEMO) as (first, second):   # two uvicorn processes, started at once
        ...

The apps read ``TRANSFERS_URL`` (a SQLAlchemy URL); the legacy code reads ``TRANSFERS_DB`` (a
SQLite path). ``seed`` returns the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

__all__ = ["ACCOUNTS", "API_SECRET", "SCHEMA", "seed", "seed_pg", "balance", "balance_pg", "until_idle", "iban",
           "workers"]

API_SECRET = "sk_live_51HxPartnerBankKey"


def iban(country: str, bban: str) -> str:
    """A valid IBAN for ``bban`` (ISO 13616 check digits computed)."""
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


ACCOUNTS: list[tuple[Any, ...]] = [  # id, holder, email, iban, balance_cents
    (1, "Noor", "noor@example.com", iban("GB", "BUKB20201555555555"), 10000),
    (2, "Ravi", "ravi@example.com", iban("GB", "BUKB20201512345678"), 2000),
    (3, "Mei", "mei@example.com", iban("DE", "370400440532013000"), 5000),
    (4, "Omar", "omar@example.com", iban("NL", "ABNA0417164300"), 500),
    (5, "Lena", "lena@example.com", iban("FR", "20041010050500013M026"), 100),
]

SCHEMA = [
    "CREATE TABLE accounts (id BIGINT PRIMARY KEY, holder TEXT NOT NULL, email TEXT NOT NULL UNIQUE, "
    "iban TEXT NOT NULL, pin_hash TEXT NOT NULL, balance_cents BIGINT NOT NULL)",
    "CREATE TABLE api_keys (id BIGINT PRIMARY KEY, service TEXT NOT NULL, secret TEXT NOT NULL)",
    "CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, receipt TEXT)",
]


def _rows() -> list[tuple[Any, ...]]:
    return [(i, holder, email, number, f"argon2id$v=19$m=65536,t=3,p=4${holder.lower()}$c2VjcmV0", cents)
            for i, holder, email, number, cents in ACCOUNTS]


def seed(path: str | Path) -> str:
    """(Re)create the SQLite file ``path`` with the accounts, a secret the API never serves, and an
    empty idempotency_keys table; return its ``TRANSFERS_URL``."""
    path = Path(path)
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for statement in SCHEMA:
            db.execute(statement)
        db.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?)", _rows())
        db.execute("INSERT INTO api_keys VALUES (1, 'partner-bank', ?)", (API_SECRET,))
    return f"sqlite+aiosqlite:///{path}"


def balance(path: str | Path, account_id: int) -> int | None:
    """The account's balance in cents, read with a connection of its own (nothing cached)."""
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        row = db.execute("SELECT balance_cents FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return row[0] if row else None


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def seed_pg(url: str) -> str:
    """The same tables and rows in the PostgreSQL database ``url`` names (a ``pg_sandbox``'s, which
    the role owns); dropped and made again. Returns ``url``."""
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute("DROP TABLE IF EXISTS accounts, api_keys, idempotency_keys")
        for statement in SCHEMA:
            await conn.execute(statement)
        await conn.executemany("INSERT INTO accounts VALUES ($1, $2, $3, $4, $5, $6)", _rows())
        await conn.execute("INSERT INTO api_keys VALUES (1, 'partner-bank', $1)", API_SECRET)
    finally:
        await conn.close()
    return url


async def balance_pg(url: str, account_id: int) -> int | None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return await conn.fetchval("SELECT balance_cents FROM accounts WHERE id = $1", account_id)
    finally:
        await conn.close()


async def until_idle(server: Any, timeout: float = 10.0) -> None:
    """Wait until an in-thread server (course.serve_in_thread) has finished every request it took,
    also those whose client has given up waiting (a timeout does not stop the server's work)."""
    state = server.server.server_state
    deadline = time.monotonic() + timeout
    while any(not task.done() for task in list(state.tasks)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server still runs {len(state.tasks)} request(s) after {timeout:g} s")
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def workers(app: str, *, n: int = 2, app_dir: str | Path | None = None,
            env: dict[str, str] | None = None) -> Iterator[list[Any]]:
    """``n`` uvicorn processes serving ``app`` ("module:attribute"), each on a port of its own, as
    two workers behind a load balancer run: started at once, stopped at the end of the block, also
    when it fails (course.server.serve_subprocess)."""
    from course.server import serve_subprocess

    with contextlib.ExitStack() as stack:
        managers = [serve_subprocess(app, app_dir=app_dir, env=env) for _ in range(n)]
        with ThreadPoolExecutor(max_workers=n) as pool:
            started = [pool.submit(m.__enter__) for m in managers]
        for manager, future in zip(managers, started):
            if future.exception() is None:
                stack.push(manager.__exit__)
        yield [future.result() for future in started]
