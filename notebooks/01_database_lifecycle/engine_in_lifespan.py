"""Fix: the engine lives exactly as long as the app: created in lifespan, disposed on shutdown."""

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

DATABASE_URL = os.environ["DATABASE_URL"]
POOL_SIZE = int(os.environ.get("POOL_SIZE", "5"))


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(DATABASE_URL, pool_size=POOL_SIZE)
    app.state.engine = engine  # per app, not per module: app factories and test apps get their own
    try:
        yield
    finally:
        await engine.dispose()  # closes every pooled connection, in the server's own event loop


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request):
    async with request.app.state.engine.connect() as conn:
        name = await conn.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return {"id": item_id, "name": name}
