"""app.py with lifespan *state*: the lifespan yields what requests need, instead of setting app.state.

Starlette copies the yielded dict into every request's scope, where ``request.state`` reads it. The
ASGI server (uvicorn, TestClient, asgi-lifespan's LifespanManager) must pass that state along.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Annotated, AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from padding import add_tables


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


add_tables(Base.metadata, int(os.environ.get("EXTRA_TABLES", "0")))


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)


class ItemOut(BaseModel):
    id: int
    name: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./items.db"))
    async with engine.begin() as conn:  # a real service runs migrations instead
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield {"sessionmaker": async_sessionmaker(engine, expire_on_commit=False)}  # lifespan state
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


# Bad input is a 422, never a 500. FastAPI's default 422 echoes every rejected value, and a value
# JSON cannot carry (NaN, Infinity, a lone surrogate) turns that answer into a 500. Answer with each
# error's location, message and type only (module 05, section 5: a generated batch of bad requests).
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.post("/items", status_code=201, response_model=ItemOut)
async def create_item(data: ItemIn, session: SessionDep) -> Item:
    item = Item(name=data.name)
    session.add(item)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(409, f"an item named {data.name!r} already exists") from None
    return item


@app.get("/items", response_model=list[ItemOut])
async def list_items(session: SessionDep) -> list[Item]:
    return list(await session.scalars(select(Item).order_by(Item.id)))
