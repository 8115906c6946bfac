"""Pool exhaustion: each request holds its session (and its pooled connection) across a slow call."""

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine


# A positive id that fits SQLite's 8-byte INTEGER; anything else is bad input (a 422), not a 500
# (a larger number would make the driver raise OverflowError).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Settings are read when the server starts (defaults: a pool of 2, wait at most 1 s for one).
    engine = create_async_engine(
        os.environ["DATABASE_URL"],
        pool_size=int(os.environ.get("POOL_SIZE", "2")),
        max_overflow=int(os.environ.get("MAX_OVERFLOW", "0")),
        pool_timeout=float(os.environ.get("POOL_TIMEOUT", "1")),  # seconds to wait for a free connection
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


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def call_partner() -> None:
    await asyncio.sleep(0.5)  # stands in for a slow external call, e.g. a payment API


@app.get("/items/{item_id}")
async def read_item(item_id: ItemId, session: SessionDep):
    name = await session.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    await call_partner()  # the transaction is still open: its connection is still checked out
    return {"id": item_id, "name": name}
