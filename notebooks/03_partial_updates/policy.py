"""PATCH with a policy per field: only what was sent is written; null clears a nullable field
(city, phone) and is a 422 naming the field for a required one (name, email); 404 for a missing
user; 422 for a wrong type or an unknown field. Never a 500."""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
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
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored

    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    email: Annotated[str, Field(min_length=3, max_length=200)] | None = None
    city: Annotated[str, Field(max_length=100)] | None = None    # null clears it
    phone: Annotated[str, Field(max_length=40)] | None = None    # null clears it

    @field_validator("name", "email")
    @classmethod
    def not_null(cls, value: str | None) -> str:
        # Runs for a value the client sent, null included; a field left out keeps its default
        # and is not validated (validate_default is off), so omitting name is fine.
        if value is None:
            raise ValueError("may not be null: leave the field out to keep its value")
        return value


UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # fits SQLite's INTEGER: bigger is a 422, not a 500


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(os.environ["DATABASE_URL"])
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def get_session(request: Request):
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.get("/users/{user_id}", response_model=UserOut)
async def read_user(user_id: UserId, session: SessionDep):
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return user


@app.patch("/users/{user_id}", response_model=UserOut)
async def patch_user(user_id: UserId, patch: UserPatch, session: SessionDep):
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    for field, value in patch.model_dump(exclude_unset=True).items():
        setattr(user, field, value)
    await session.commit()
    return user  # the row as stored, not the request body
