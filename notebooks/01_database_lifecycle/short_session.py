"""Fix: open the session for the query only; the connection is back in the pool before the slow call."""

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

DATABASE_URL = os.environ["DATABASE_URL"]
POOL_SIZE = int(os.environ.get("POOL_SIZE", "2"))
MAX_OVERFLOW = int(os.environ.get("MAX_OVERFLOW", "0"))
POOL_TIMEOUT = float(os.environ.get("POOL_TIMEOUT", "1"))
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "0.5"))


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(
        DATABASE_URL, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_timeout=POOL_TIMEOUT
    )
    app.state.engine = engine
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request):
    async with request.app.state.sessions() as session:
        name = await session.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    # The session is closed here: its connection is back in the pool for other requests.
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    await asyncio.sleep(SLOW_SECONDS)  # the slow external call, holding nothing
    return {"id": item_id, "name": name}
