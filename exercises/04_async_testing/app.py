"""Bookmarks API: the app under test in module 04. It is given; you do not need to change it.

The engine is created in the lifespan (at startup, not at import), from the DATABASE_URL
environment variable; without it the app uses ./bookmarks.db. Routes get their session from
the ``get_session`` dependency, which tests can override. EXTRA_TABLES=N adds N unrelated tables
(padding.py), a stand-in for a real service's schema: the checks time your fixtures with 20.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Annotated, AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, HttpUrl
from sqlalchemy import String, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from padding import add_tables

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./bookmarks.db"


class Base(DeclarativeBase):
    pass


class Bookmark(Base):
    __tablename__ = "bookmarks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(String(200))


add_tables(Base.metadata, int(os.environ.get("EXTRA_TABLES", "0")))


class BookmarkIn(BaseModel):
    url: HttpUrl
    title: str = Field(min_length=1, max_length=200)


class BookmarkOut(BaseModel):
    id: int
    url: str
    title: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    async with engine.begin() as conn:  # a real service would run migrations instead
        await conn.run_sync(Base.metadata.create_all)
    app.state.engine = engine
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(title="Bookmarks", lifespan=lifespan)


# Bad input is a 422, never a 500. FastAPI's default 422 echoes every rejected value, and a value
# JSON cannot carry (NaN, Infinity, a lone surrogate) turns that answer into a 500. Answer with each
# error's location, message and type only (module 05, section 5: a generated batch of bad requests).
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
# An id in the URL is positive and fits SQLite's 8-byte INTEGER: a larger one would make the
# driver raise OverflowError (a 500). Out of range is bad input, answered with a 422.
BookmarkId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@app.get("/health")
async def health(request: Request) -> dict[str, str]:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return {"status": "ok"}


@app.post("/bookmarks", status_code=201, response_model=BookmarkOut)
async def create_bookmark(data: BookmarkIn, session: SessionDep) -> Bookmark:
    bookmark = Bookmark(url=str(data.url), title=data.title)
    session.add(bookmark)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(409, f"{data.url} is already bookmarked") from None
    return bookmark


@app.get("/bookmarks", response_model=list[BookmarkOut])
async def list_bookmarks(session: SessionDep) -> list[Bookmark]:
    return list(await session.scalars(select(Bookmark).order_by(Bookmark.id)))


@app.get("/bookmarks/{bookmark_id}", response_model=BookmarkOut)
async def get_bookmark(bookmark_id: BookmarkId, session: SessionDep) -> Bookmark:
    bookmark = await session.get(Bookmark, bookmark_id)
    if bookmark is None:
        raise HTTPException(404, f"no bookmark {bookmark_id}")
    return bookmark


@app.delete("/bookmarks/{bookmark_id}", status_code=204)
async def delete_bookmark(bookmark_id: BookmarkId, session: SessionDep) -> Response:
    bookmark = await session.get(Bookmark, bookmark_id)
    if bookmark is None:
        raise HTTPException(404, f"no bookmark {bookmark_id}")
    await session.delete(bookmark)
    await session.commit()
    return Response(status_code=204)
