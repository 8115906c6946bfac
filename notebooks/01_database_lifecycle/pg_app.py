"""PostgreSQL: every request needs a connection for the length of a slow query."""

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Settings are read when the server (each worker) starts.
    pool_size = int(os.environ.get("POOL_SIZE", "5"))  # SQLAlchemy's defaults: 5 ...
    engine = create_async_engine(
        os.environ["DATABASE_URL"],  # postgresql+asyncpg://role@127.0.0.1:5432/db
        pool_size=pool_size,
        max_overflow=int(os.environ.get("MAX_OVERFLOW", "10")),  # ... plus 10 more under load
        pool_timeout=float(os.environ.get("POOL_TIMEOUT", "30")),
        pool_pre_ping=os.environ.get("POOL_PRE_PING") == "1",  # test each connection on checkout
    )
    app.state.query_seconds = float(os.environ.get("QUERY_SECONDS", "0.3"))
    # Open the whole pool now: a worker that cannot get its connections fails at startup,
    # and it holds what it will hold after its first busy minute anyway.
    conns = [await engine.connect() for _ in range(pool_size)]
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
        await conn.execute(text("SELECT pg_sleep(:s)"), {"s": request.app.state.query_seconds})  # a slow query
        backend = await conn.scalar(text("SELECT pg_backend_pid()"))
    return {"worker_pid": os.getpid(), "backend_pid": backend}
