"""Anti-pattern: the engine is created when the module is imported and never disposed."""

import os
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


# A positive id that fits SQLite's 8-byte INTEGER; anything else is bad input (a 422), not a 500
# (a larger number would make the driver raise OverflowError).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]

# Runs once per process, on import, whoever imports it (the server, a test, a script):
# the settings are read and the engine is built before anyone could change them,
# and nothing ever calls engine.dispose().
engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=5)

app = FastAPI()


@app.get("/items/{item_id}")
async def read_item(item_id: ItemId):
    async with engine.connect() as conn:
        name = await conn.scalar(text("SELECT name FROM items WHERE id = :id"), {"id": item_id})
    if name is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return {"id": item_id, "name": name}
