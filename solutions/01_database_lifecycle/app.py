"""Shop API: one endpoint that reads an item and asks a slow partner for a shipping quote.

Reference answer for exercise 01 (database lifecycle).
"""

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from pydantic import BaseModel
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The database gives this service two connections. Do not change these numbers.
POOL_SETTINGS = {"pool_size": 2, "max_overflow": 0, "pool_timeout": 1}
SLOW_CALL_SECONDS = float(os.environ.get("SLOW_CALL_SECONDS", "0.5"))


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price_cents: Mapped[int]


class Quote(BaseModel):
    id: int
    name: str
    price_cents: int
    shipping_cents: int


# An id in the URL is positive and fits SQLite's 8-byte INTEGER: a larger one would make the
# driver raise OverflowError (a 500). Out of range is bad input, answered with a 422.
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def quote_shipping(price_cents: int) -> int:
    """Stands in for an HTTP call to a shipping partner: slow, and no database needed."""
    await asyncio.sleep(SLOW_CALL_SECONDS)
    return 499 if price_cents < 5000 else 0


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Created when the server starts, with the settings of that moment, and owned by this app.
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///shop.db"), **POOL_SETTINGS)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        # Closes every pooled connection; without it they stay open after shutdown.
        await engine.dispose()


app = FastAPI(title="Shop", lifespan=lifespan)


async def get_session(request: Request):
    # `yield` inside `async with`: the session is closed after the request, also when it fails.
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.get("/items/{item_id}")
async def read_item(item_id: ItemId, session: SessionDep) -> Quote:
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"item {item_id} not found")
    name, price = item.name, item.price_cents
    # Done with the database: give the connection back to the pool before the slow call.
    await session.close()
    shipping = await quote_shipping(price)
    return Quote(id=item_id, name=name, price_cents=price, shipping_cents=shipping)
