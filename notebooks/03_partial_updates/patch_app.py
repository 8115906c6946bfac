"""PATCH /tickets/{ticket_id} three ways: which fields of the update model reach the database?

An issue tracker's tickets: title and status are required (NOT NULL), assignee and due date are
optional (nullable). make_app(changes) builds the app; `changes(patch)` turns the request's update
model into the columns to write. The three functions below are the three answers you meet online.
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


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))             # NOT NULL
    status: Mapped[str] = mapped_column(String(20))             # NOT NULL
    assignee: Mapped[str | None] = mapped_column(String(40))    # nullable
    due: Mapped[str | None] = mapped_column(String(10))         # nullable: YYYY-MM-DD


class TicketOut(BaseModel):
    id: int
    title: str
    status: str
    assignee: str | None
    due: str | None


class TicketPatch(BaseModel):  # every field optional: the client sends only what changes
    title: str | None = None
    status: str | None = None
    assignee: str | None = None
    due: str | None = None


class PlanningPatch(BaseModel):  # only the nullable columns: who works on it, and by when
    assignee: str | None = None
    due: str | None = None


def everything(patch: BaseModel) -> dict:
    return patch.model_dump()  # every field, the ones not sent as their default: None


def sent_fields(patch: BaseModel) -> dict:
    return patch.model_dump(exclude_unset=True)  # only the fields the client sent


def not_none(patch: BaseModel) -> dict:
    return patch.model_dump(exclude_none=True)  # every field whose value is not None


TicketId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # SQLite's INTEGER: bigger is a 422, not a 500


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

    async def apply(session: AsyncSession, ticket_id: int, patch: BaseModel) -> Ticket:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise HTTPException(status_code=404, detail=f"no ticket {ticket_id}")
        for field, value in changes(patch).items():
            setattr(ticket, field, value)
        await session.commit()
        return ticket  # the stored row (expire_on_commit=False keeps what was committed)

    @app.patch("/tickets/{ticket_id}", response_model=TicketOut)
    async def patch_ticket(ticket_id: TicketId, patch: TicketPatch, session: SessionDep):
        return await apply(session, ticket_id, patch)

    @app.patch("/tickets/{ticket_id}/planning", response_model=TicketOut)
    async def plan_ticket(ticket_id: TicketId, patch: PlanningPatch, session: SessionDep):
        return await apply(session, ticket_id, patch)

    return app


app = make_app(sent_fields)
