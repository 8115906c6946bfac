"""Anti-pattern: the engine is created when the module is imported and never disposed."""

import os

from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

DATABASE_URL = os.environ["DATABASE_URL"]
POOL_SIZE = int(os.environ.get("POOL_SIZE", "5"))

# Runs once per process, on import, whoever imports it (the server, a test, a script);
# nothing ever calls engine.dispose().
engine = create_async_engine(DATABASE_URL, pool_size=POOL_SIZE)

app = FastAPI()


@app.get("/items/{item_id}")
async def read_item(item_id: int):
    async with engine.connect() as conn:
        name = await conn.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return {"id": item_id, "name": name}
