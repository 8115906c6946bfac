"""PostgreSQL: every request needs a connection for the length of a slow query."""

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

DATABASE_URL = os.environ["DATABASE_URL"]  # postgresql+asyncpg://role@127.0.0.1:5432/db
POOL_SIZE = int(os.environ.get("POOL_SIZE", "5"))  # SQLAlchemy's defaults: 5 ...
MAX_OVERFLOW = int(os.environ.get("MAX_OVERFLOW", "10"))  # ... plus 10 more under load
POOL_TIMEOUT = float(os.environ.get("POOL_TIMEOUT", "30"))
POOL_PRE_PING = os.environ.get("POOL_PRE_PING") == "1"  # test each connection on checkout
QUERY_SECONDS = float(os.environ.get("QUERY_SECONDS", "0.3"))


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(
        DATABASE_URL, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW,
        pool_timeout=POOL_TIMEOUT, pool_pre_ping=POOL_PRE_PING,
    )
    # Open the whole pool now: a worker that cannot get its connections fails at startup,
    # and it holds what it will hold after its first busy minute anyway.
    conns = [await engine.connect() for _ in range(POOL_SIZE)]
    for conn in conns:
        await conn.close()  # back to the pool, still open
    app.state.engine = engine
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/report")
async def report(request: Request):
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT pg_sleep(:s)"), {"s": QUERY_SECONDS})  # a slow query
        backend = await conn.scalar(text("SELECT pg_backend_pid()"))
    return {"worker_pid": os.getpid(), "backend_pid": backend}
