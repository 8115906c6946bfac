"""Users API: read a user, and change some of their fields with PATCH.

Exercise 03 (partial updates). GET works. PATCH erases what the client did not send, turns a
null name into a 500 and a missing user into a 500, and lets a client overwrite a change it has
never seen. Read README.md, fix the four TODOs, then run `course check 03`.
"""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))          # NOT NULL
    email: Mapped[str] = mapped_column(String(200))         # NOT NULL
    city: Mapped[str | None] = mapped_column(String(100))   # nullable
    phone: Mapped[str | None] = mapped_column(String(40))   # nullable
    # The table also has `version INTEGER NOT NULL DEFAULT 1`, unused so far (TODO 4 may use it).


class UserOut(BaseModel):
    id: int
    name: str
    email: str
    city: str | None
    phone: str | None


class UserPatch(BaseModel):
    """The fields a client may change. It sends only those it changes."""

    # TODO 2: a client may send null for city or phone (it clears them), but a null name or
    # email is a client error: a 422 that names the field, before anything is written. Say it in
    # the types, so that the OpenAPI schema (/openapi.json, what clients are generated from)
    # tells the truth: today it says name may be null. Leaving a field out stays allowed; a
    # field the model does not know ({"nmae": "Ada"}) is a 422, not silently ignored.
    name: str | None = None
    email: str | None = None
    city: str | None = None
    phone: str | None = None


# An id in the URL is positive and fits SQLite's 8-byte INTEGER: a larger one would make the
# driver raise OverflowError (a 500). Out of range is bad input, answered with a 422.
UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///users.db"))
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(title="Users", lifespan=lifespan)


# Given (module 05 explains it): FastAPI's default 422 answer echoes every rejected value, and JSON
# cannot carry NaN, so {"city": NaN} would be a 500. This answer names the field without the value.
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


async def get_session(request: Request):
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


# TODO 4: two clients read user 1; one changes the city; the other, still holding the old
# copy, sends its own change and silently overwrites the first (a lost update). Answer GET and
# PATCH with an ETag header naming the version of the user they show; a PATCH with an If-Match
# header that is no longer the current ETag is a 412 and writes nothing, also when two such
# PATCHes arrive at the same moment (only one of them may win).
@app.get("/users/{user_id}", response_model=UserOut)
async def read_user(user_id: UserId, session: SessionDep) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    return user


@app.patch("/users/{user_id}", response_model=UserOut)
async def patch_user(user_id: UserId, patch: UserPatch, session: SessionDep) -> User:
    user = await session.get(User, user_id)
    # TODO 3: a user that does not exist is a 404, not a 500.
    # TODO 1: model_dump() returns every field, None for those the client did not send, so
    # {"city": "Lyon"} tries to erase the name, the email and the phone. Write only the
    # fields the client sent.
    for field, value in patch.model_dump().items():
        setattr(user, field, value)
    await session.commit()
    return user  # the row as stored (expire_on_commit=False keeps the committed values)
