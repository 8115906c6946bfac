"""policy.py's ticket API, safe with two editors: optimistic concurrency with ETag and If-Match.

GET answers with an ETag, the row's version. A PATCH that carries If-Match is applied only if the
ticket is still at that version; otherwise it is a 412 Precondition Failed and nothing is written.
Every UPDATE adds one to the version, so any change makes every ETag handed out before it stale.

make_app(atomic=True): the UPDATE itself checks the version (WHERE version = <the one compared>),
so of two PATCHes sent at once with the same ETag only one can match.
make_app(atomic=False): the version is compared in Python, then the row is written: the race.
"""

from datetime import date
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Date, String, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from policy import SessionDep, TicketId, TicketOut, TicketPatch, invalid_request, lifespan


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    assignee: Mapped[str | None] = mapped_column(String(40))
    due: Mapped[date | None] = mapped_column(Date)
    version: Mapped[int]                                        # 1, then +1 on every UPDATE


def etag(version: int) -> str:
    return f'"{version}"'  # a strong ETag is a quoted string


def still_current(if_match: str, version: int) -> bool:
    """If-Match holds "*" or a list of ETags (RFC 9110, 13.1.1); W/"..." never matches."""
    return if_match.strip() == "*" or etag(version) in (tag.strip() for tag in if_match.split(","))


def make_app(atomic: bool = True) -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.get("/tickets/{ticket_id}", response_model=TicketOut)
    async def read_ticket(ticket_id: TicketId, session: SessionDep, response: Response):
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise HTTPException(status_code=404, detail=f"no ticket {ticket_id}")
        response.headers["ETag"] = etag(ticket.version)
        return ticket

    @app.patch("/tickets/{ticket_id}", response_model=TicketOut)
    async def patch_ticket(ticket_id: TicketId, patch: TicketPatch, session: SessionDep,
                           response: Response, if_match: Annotated[str | None, Header()] = None):
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise HTTPException(status_code=404, detail=f"no ticket {ticket_id}")
        if if_match is not None and not still_current(if_match, ticket.version):
            raise HTTPException(status_code=412, detail="the ticket changed since you read it")
        changes = patch.model_dump(exclude_unset=True)
        if changes:
            write = update(Ticket).where(Ticket.id == ticket_id)
            if atomic and if_match is not None:
                write = write.where(Ticket.version == ticket.version)  # still the one we compared?
            write = write.values(**changes, version=Ticket.version + 1).returning(Ticket)
            ticket = (await session.scalars(write)).one_or_none()
            if ticket is None:  # another request changed it between our read and our write
                raise HTTPException(status_code=412, detail="the ticket changed since you read it")
            await session.commit()
        response.headers["ETag"] = etag(ticket.version)
        return ticket

    return app


app = make_app()
