"""Users API: read a user, and change some of their fields with PATCH.

Reference answer for exercise 03 (partial updates).
"""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from pydantic import BaseModel, field_validator
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


class UserOut(BaseModel):
    id: int
    name: str
    email: str
    city: str | None
    phone: str | None


class UserPatch(BaseModel):
    """The fields a client may change. It sends only those it changes."""

    name: str | None = None
    email: str | None = None
    city: str | None = None
    phone: str | None = None

    @field_validator("name", "email")
    @classmethod
    def not_null(cls, value: str | None) -> str:
        # Only values the client sent reach a validator (defaults are not validated), so leaving
        # name out is fine and `"name": null` is a 422 naming the field.
        if value is None:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value


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


async def get_session(request: Request):
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.get("/users/{user_id}", response_model=UserOut)
async def read_user(user_id: UserId, session: SessionDep) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    return user


@app.patch("/users/{user_id}", response_model=UserOut)
async def patch_user(user_id: UserId, patch: UserPatch, session: SessionDep) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    for field, value in patch.model_dump(exclude_unset=True).items():
        setattr(user, field, value)
    await session.commit()
    return user  # the row as stored (expire_on_commit=False keeps the committed values)
