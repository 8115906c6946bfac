"""PATCH /users/{user_id} three ways: which fields of the update model reach the database?

make_app(changes) builds the app; `changes(patch)` turns the request's update model into the
columns to write. The three functions below are the three answers you meet online.
"""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request
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


class UserOut(BaseModel):
    id: int
    name: str
    email: str
    city: str | None
    phone: str | None


class UserPatch(BaseModel):  # every field optional: the client sends only what changes
    name: str | None = None
    email: str | None = None
    city: str | None = None
    phone: str | None = None


class ContactPatch(BaseModel):  # only nullable columns: a contact card
    city: str | None = None
    phone: str | None = None


def everything(patch: BaseModel) -> dict:
    return patch.model_dump()  # every field, the ones not sent as their default: None


def sent_fields(patch: BaseModel) -> dict:
    return patch.model_dump(exclude_unset=True)  # only the fields the client sent


def not_none(patch: BaseModel) -> dict:
    return patch.model_dump(exclude_none=True)  # every field whose value is not None


UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # fits SQLite's INTEGER: bigger is a 422, not a 500


def make_app(changes=sent_fields) -> FastAPI:
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

    async def apply(session: AsyncSession, user_id: int, patch: BaseModel) -> User:
        user = await session.get(User, user_id)
        if user is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        for field, value in changes(patch).items():
            setattr(user, field, value)
        await session.commit()
        return user  # the stored row (expire_on_commit=False keeps what was committed)

    @app.patch("/users/{user_id}", response_model=UserOut)
    async def patch_user(user_id: UserId, patch: UserPatch, session: SessionDep):
        return await apply(session, user_id, patch)

    @app.patch("/users/{user_id}/contact", response_model=UserOut)
    async def patch_contact(user_id: UserId, patch: ContactPatch, session: SessionDep):
        return await apply(session, user_id, patch)

    return app


app = make_app(sent_fields)
