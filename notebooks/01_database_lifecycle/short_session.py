"""Fix: open the session for the query only; the connection is back in the pool before the slow call."""

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine


# A positive id that fits SQLite's 8-byte INTEGER; anything else is bad input (a 422), not a 500
# (a larger number would make the driver raise OverflowError).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(  # the same settings and the same pool as held_session.py
        os.environ["DATABASE_URL"],
        pool_size=int(os.environ.get("POOL_SIZE", "2")),
        max_overflow=int(os.environ.get("MAX_OVERFLOW", "0")),
        pool_timeout=float(os.environ.get("POOL_TIMEOUT", "1")),
    )
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def call_partner() -> None:
    await asyncio.sleep(0.5)


@app.get("/items/{item_id}")
async def read_item(item_id: ItemId, request: Request):
    async with request.app.state.sessions() as session:
        name = await session.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    # The session is closed here: its connection is back in the pool for other requests.
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    await call_partner()  # the slow call, holding nothing
    return {"id": item_id, "name": name}
