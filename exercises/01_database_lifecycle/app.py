"""Shop API: one endpoint that reads an item and asks a slow partner for a shipping quote.

Exercise 01 (database lifecycle). It works for one user at a time and falls over under load.
Read README.md, fix the three TODOs, then run `course check 01`.
"""

import asyncio
import os
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path
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


# TODO 1: the engine is created when this module is imported and never disposed.
# Create it in a lifespan function when the server starts, keep it on the app
# (app.state or lifespan state), and dispose of it when the server stops.
engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///shop.db"), **POOL_SETTINGS)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)

app = FastAPI(title="Shop")


# TODO 2: nothing ever closes this session. Make it a dependency that closes the
# session after the request, also when the request fails.
async def get_session():
    session = SessionLocal()
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.get("/items/{item_id}")
async def read_item(item_id: ItemId, session: SessionDep) -> Quote:
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"item {item_id} not found")
    # TODO 3: the session keeps its connection during this slow call, so two slow
    # requests use up the whole pool. Keep the quote call, but hold the
    # connection only while you need the database.
    shipping = await quote_shipping(item.price_cents)
    return Quote(id=item.id, name=item.name, price_cents=item.price_cents, shipping_cents=shipping)
