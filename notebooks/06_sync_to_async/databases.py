"""The same lookup with a sync SQLAlchemy session and with an async one, in `async def` endpoints.

The database is a SQLite file (``DB_PATH``). Its ``users`` view calls ``lookup_delay()``, a function
every connection registers, that waits ``LOOKUP_SECONDS``: it stands in for a query that waits on
the database (a lock, a cold disk, a network round trip to PostgreSQL).
"""

import os
import time
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Request
from sqlalchemy import create_engine, event, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]
QUERY = text("SELECT name FROM users WHERE id = :id")


def register_lookup_delay(dbapi_connection, _record) -> None:
    seconds = float(os.environ.get("LOOKUP_SECONDS", "0.1"))
    dbapi_connection.create_function("lookup_delay", 1, lambda value: time.sleep(seconds) or value)


@asynccontextmanager
async def lifespan(app: FastAPI):
    path = os.environ["DB_PATH"]
    sync_engine = create_engine(f"sqlite:///{path}")
    async_engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    for engine in (sync_engine, async_engine.sync_engine):
        event.listen(engine, "connect", register_lookup_delay)
    app.state.sync_sessions = sessionmaker(sync_engine)
    app.state.async_sessions = async_sessionmaker(async_engine, expire_on_commit=False)
    try:
        yield
    finally:
        sync_engine.dispose()
        await async_engine.dispose()


app = FastAPI(title="databases", lifespan=lifespan)


def found(name: str | None, user_id: int) -> dict:
    if name is None:
        raise HTTPException(404, f"no user {user_id}")
    return {"id": user_id, "name": name}


@app.get("/sync-session/{user_id}")
async def sync_session(user_id: UserId, request: Request) -> dict:
    with request.app.state.sync_sessions() as session:  # sqlite3 runs the query in the loop's thread
        name = session.scalar(QUERY, {"id": user_id})
    return found(name, user_id)


@app.get("/async-session/{user_id}")
async def async_session(user_id: UserId, request: Request) -> dict:
    async with request.app.state.async_sessions() as session:  # aiosqlite: in its own thread, awaited
        name = await session.scalar(QUERY, {"id": user_id})
    return found(name, user_id)
