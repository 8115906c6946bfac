"""PATCH with the policy in the types: only what was sent is written; title and status may be left
out but never null, and the type says so (so does the OpenAPI schema clients are generated from);
null clears the assignee or the due date; 404 for a missing ticket; 422 for a wrong type, an
unknown field, or a number JSON cannot carry (NaN). Never a 500."""

import os
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import MISSING, BaseModel, ConfigDict, Field
from sqlalchemy import Date, String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Status = Literal["open", "in progress", "blocked", "done"]


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))             # NOT NULL
    status: Mapped[str] = mapped_column(String(20))             # NOT NULL
    assignee: Mapped[str | None] = mapped_column(String(40))    # nullable
    due: Mapped[date | None] = mapped_column(Date)              # nullable


class TicketOut(BaseModel):
    id: int
    title: str
    status: Status
    assignee: str | None
    due: date | None


class TicketPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored

    # May be left out, may not be null: MISSING is "not sent", and null is not a str.
    title: Annotated[str, Field(min_length=1, max_length=200)] | MISSING = MISSING
    status: Status | MISSING = MISSING
    # May be left out; null clears it.
    assignee: Annotated[str, Field(min_length=1, max_length=40)] | None | MISSING = MISSING
    due: date | None | MISSING = MISSING


TicketId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # SQLite's INTEGER: bigger is a 422, not a 500


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(os.environ["DATABASE_URL"])
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own handler echoes each rejected value, and JSON cannot carry NaN: a 500 for
    # {"title": NaN}. Say where and why, not what (module 05 finds it with generated input).
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


app.add_exception_handler(RequestValidationError, invalid_request)


async def get_session(request: Request):
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.get("/tickets/{ticket_id}", response_model=TicketOut)
async def read_ticket(ticket_id: TicketId, session: SessionDep):
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(status_code=404, detail=f"no ticket {ticket_id}")
    return ticket


@app.patch("/tickets/{ticket_id}", response_model=TicketOut)
async def patch_ticket(ticket_id: TicketId, patch: TicketPatch, session: SessionDep):
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(status_code=404, detail=f"no ticket {ticket_id}")
    # A MISSING field is left out of model_dump() too; exclude_unset=True says why in the code.
    for field, value in patch.model_dump(exclude_unset=True).items():
        setattr(ticket, field, value)
    await session.commit()
    return ticket  # the row as stored, not the request body
