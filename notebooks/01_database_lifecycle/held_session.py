"""Pool exhaustion: each request holds its session (and its pooled connection) across a slow call."""

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

DATABASE_URL = os.environ["DATABASE_URL"]
POOL_SIZE = int(os.environ.get("POOL_SIZE", "2"))
MAX_OVERFLOW = int(os.environ.get("MAX_OVERFLOW", "0"))
POOL_TIMEOUT = float(os.environ.get("POOL_TIMEOUT", "1"))  # seconds to wait for a free connection
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "0.5"))  # the slow external call


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


async def get_session(request: Request):
    async with request.app.state.sessions() as session:
        yield session  # the session stays open until the request is over


@app.get("/items/{item_id}")
async def read_item(item_id: int, session: Annotated[AsyncSession, Depends(get_session)]):
    name = await session.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    await asyncio.sleep(SLOW_SECONDS)  # e.g. a payment API: the connection is still checked out
    return {"id": item_id, "name": name}
