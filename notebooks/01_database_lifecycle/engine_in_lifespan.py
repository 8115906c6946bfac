"""Fix: the engine lives exactly as long as the app: created in lifespan, disposed on shutdown."""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


# A positive id that fits SQLite's 8-byte INTEGER; anything else is bad input (a 422), not a 500
# (a larger number would make the driver raise OverflowError).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Settings are read when the server starts, not when the module is imported.
    engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=5)
    app.state.engine = engine  # per app, not per module: app factories and test apps get their own
    try:
        yield
    finally:
        await engine.dispose()  # closes every pooled connection, in the server's own event loop


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(item_id: ItemId, request: Request):
    async with request.app.state.engine.connect() as conn:
        name = await conn.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return {"id": item_id, "name": name}
