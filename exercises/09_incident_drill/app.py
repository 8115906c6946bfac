"""Harvest Share: the veg-box co-op's service. Members keep a prepaid credit, order a weekly box
and pay for it from their credit; the treasurer imports the bank's statement of their top-ups;
once a box is paid, the courier is booked and the member gets a receipt.

Exercise 09 (the capstone incident drill). It passed every manual test before it went live; on
its first delivery day it paged the on-call engineer. Read README.md, find the cause of each
symptom below with the course's instruments, fix it, then run `course check 09`.

It talks to three partners, each reached through its own URL:
    the courier   delivery slots, a quote per delivery, bookings, tracking
    the farm      how many boxes it can still pack this week
    the mail      receipts

Configuration (environment variables, or a .env file in the working directory):
    HARVEST_DATABASE_URL   SQLAlchemy URL of the database (default sqlite+aiosqlite:///harvest.db)
    HARVEST_COURIER_URL    the courier's API              (default http://127.0.0.1:8101/courier)
    HARVEST_FARM_URL       the farm's API                 (default http://127.0.0.1:8101/farm)
    HARVEST_MAIL_URL       the mail service's API         (default http://127.0.0.1:8101/mail)

Run it:  uvicorn app:app --port 8000
"""

# The incident, as the on-call engineer wrote it down. Each TODO is a symptom, not a place:
# find its cause (`course probe`, the notebook's instruments), fix it, prove it.
#
# TODO 1: the load test: when 20 members look at their order at once, many get a 500.
# TODO 2: the courier's mail: the service opens a new connection for every visit to the slots page.
# TODO 3: a member: "I changed my delivery note, and my phone number and address vanished."
# TODO 4: another member: "I clicked Pay, the page hung, I clicked again: I was charged twice."
# TODO 5: the latency graph: while the box list loads, every other request waits.
# TODO 6: the memory graph: importing the bank statement grows the server by several times the file.
# TODO 7: the log: "Exception in ASGI application ... /mail/messages", and a paid box never booked.

import csv
import io
import logging
import re
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, AsyncIterator, Iterator, Literal

import httpx
import requests
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Path, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import ForeignKey, String, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

log = logging.getLogger("harvest")

# The database gives this service three connections. Do not change these numbers.
POOL_SETTINGS = {"pool_size": 3, "max_overflow": 0, "pool_timeout": 1}
BOXES = {"small": 1800, "family": 3200}  # this season's prices, in cents
MAX_STATEMENT_BYTES = 64 * 2**20
STATEMENT_HEADER = ["booked_on", "bank_ref", "member_id", "amount_cents", "memo"]
CSV_TYPES = {"text/csv", "text/plain", "application/vnd.ms-excel"}
BATCH_ROWS = 1000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HARVEST_", env_file=".env")

    database_url: str = "sqlite+aiosqlite:///harvest.db"
    courier_url: str = "http://127.0.0.1:8101/courier"
    farm_url: str = "http://127.0.0.1:8101/farm"
    mail_url: str = "http://127.0.0.1:8101/mail"
    partner_timeout: float = 5.0


@lru_cache
def get_settings() -> Settings:
    return Settings()


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(String(200))
    credit_cents: Mapped[int]


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    box: Mapped[str] = mapped_column(String(20))
    price_cents: Mapped[int]
    fee_cents: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(10))
    booking: Mapped[str | None] = mapped_column(String(40))


class LedgerEntry(Base):
    __tablename__ = "ledger"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    amount_cents: Mapped[int]
    bank_ref: Mapped[str | None] = mapped_column(String(40), unique=True)
    memo: Mapped[str | None] = mapped_column(String(200))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    engine = create_async_engine(settings.database_url, **POOL_SETTINGS)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with httpx.AsyncClient(timeout=settings.partner_timeout) as http:
            app.state.http = http
            yield
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


def get_http(request: Request) -> httpx.AsyncClient:
    return request.app.state.http


SessionDep = Annotated[AsyncSession, Depends(get_session)]
HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MemberId = Annotated[int, Path(ge=1, le=2**63 - 1)]
OrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]

app = FastAPI(title="Harvest Share", lifespan=lifespan)


# Bad input is a 422 that names the field, without echoing the value (NaN cannot be echoed in JSON).
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


class MemberOut(BaseModel):
    id: int
    name: str
    email: str | None
    phone: str | None
    address: str | None
    note: str | None
    credit_cents: int


class MemberUpdate(BaseModel):
    """Delivery details a member may change; null clears one."""

    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32)
    address: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=200)


class OrderIn(BaseModel):
    member_id: int = Field(strict=True, ge=1, le=2**63 - 1)
    box: Literal["small", "family"]


class OrderOut(BaseModel):
    id: int
    member_id: int
    box: str
    price_cents: int
    fee_cents: int | None
    status: str
    booking: str | None
    tracking: str | None = None


def order_out(order: Order, tracking: str | None = None) -> OrderOut:
    return OrderOut(id=order.id, member_id=order.member_id, box=order.box, price_cents=order.price_cents,
                    fee_cents=order.fee_cents, status=order.status, booking=order.booking, tracking=tracking)


def reference(order_id: int) -> str:
    """How the courier knows an order of ours."""
    return f"HB-{order_id}"


# --- the partners -------------------------------------------------------------------------------------

async def quote_delivery(http: httpx.AsyncClient, settings: Settings, address: str) -> int:
    try:
        response = await http.post(f"{settings.courier_url}/quotes", json={"address": address})
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"the courier gave no quote ({type(exc).__name__})") from None
    return int(response.json()["fee_cents"])


async def track(http: httpx.AsyncClient, settings: Settings, order_id: int) -> str | None:
    try:
        response = await http.get(f"{settings.courier_url}/tracking/{reference(order_id)}")
        response.raise_for_status()
    except httpx.HTTPError:
        return None  # the order page still works while the courier's tracking is down
    return response.json()["status"]


async def book_delivery(app: FastAPI, order_id: int) -> None:
    settings, http = get_settings(), app.state.http
    async with app.state.sessions() as session:
        order = await session.get(Order, order_id)
        member = await session.get(Member, order.member_id)
        address = member.address
    response = await http.post(f"{settings.courier_url}/bookings",
                               json={"reference": reference(order_id), "address": address})
    response.raise_for_status()
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(Order).where(Order.id == order_id).values(booking=response.json()["booking"]))


async def send_receipt(app: FastAPI, order_id: int) -> None:
    settings, http = get_settings(), app.state.http
    async with app.state.sessions() as session:
        order = await session.get(Order, order_id)
        member = await session.get(Member, order.member_id)
        email, total = member.email, order.price_cents + (order.fee_cents or 0)
    response = await http.post(f"{settings.mail_url}/messages", json={
        "to": email, "subject": f"Your {order.box} box, order {order_id}",
        "text": f"Paid: {total / 100:.2f} from your credit. The courier will bring it."})
    response.raise_for_status()


# --- the routes ---------------------------------------------------------------------------------------------

@app.get("/health")
async def health() -> dict:
    return {"ok": True}


@app.get("/boxes")
async def boxes(settings: SettingsDep) -> list[dict]:
    """This week's boxes, with how many the farm can still pack (None while the farm is away)."""
    try:
        response = requests.get(f"{settings.farm_url}/availability", timeout=settings.partner_timeout)
        response.raise_for_status()
        available = response.json()
    except requests.RequestException:
        available = {}
    return [{"box": box, "price_cents": cents, "available": available.get(box)} for box, cents in BOXES.items()]


@app.get("/delivery-slots")
async def delivery_slots(settings: SettingsDep) -> dict:
    http = httpx.AsyncClient(timeout=settings.partner_timeout)
    try:
        response = await http.get(f"{settings.courier_url}/slots")
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"the courier did not answer ({type(exc).__name__})") from None
    return response.json()


@app.get("/members/{member_id}")
async def read_member(member_id: MemberId, session: SessionDep) -> MemberOut:
    member = await session.get(Member, member_id)
    if member is None:
        raise HTTPException(404, f"no member {member_id}")
    return MemberOut.model_validate(member, from_attributes=True)


@app.patch("/members/{member_id}")
async def update_member(member_id: MemberId, changes: MemberUpdate, session: SessionDep) -> MemberOut:
    member = await session.get(Member, member_id)
    if member is None:
        raise HTTPException(404, f"no member {member_id}")
    for name, value in changes.model_dump().items():
        setattr(member, name, value)
    await session.commit()
    return MemberOut.model_validate(member, from_attributes=True)


@app.get("/members/{member_id}/statement")
async def statement(member_id: MemberId, session: SessionDep) -> dict:
    member = await session.get(Member, member_id)
    if member is None:
        raise HTTPException(404, f"no member {member_id}")
    entries = (await session.scalars(select(LedgerEntry).where(LedgerEntry.member_id == member_id)
                                     .order_by(LedgerEntry.id.desc()).limit(50))).all()
    return {"member_id": member_id, "credit_cents": member.credit_cents,
            "entries": [{"amount_cents": e.amount_cents, "order_id": e.order_id, "memo": e.memo} for e in entries]}


@app.post("/orders", status_code=201)
async def place_order(new: OrderIn, session: SessionDep) -> OrderOut:
    if await session.get(Member, new.member_id) is None:
        raise HTTPException(404, f"no member {new.member_id}")
    order = Order(member_id=new.member_id, box=new.box, price_cents=BOXES[new.box], status="pending")
    session.add(order)
    await session.commit()
    return order_out(order)


@app.get("/orders/{order_id}")
async def read_order(order_id: OrderId, session: SessionDep, http: HttpDep, settings: SettingsDep) -> OrderOut:
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    return order_out(order, await track(http, settings, order_id))


@app.post("/orders/{order_id}/pay")
async def pay_order(order_id: OrderId, request: Request, http: HttpDep, settings: SettingsDep,
                    background: BackgroundTasks) -> OrderOut:
    sessions = request.app.state.sessions
    async with sessions() as session:
        order = await session.get(Order, order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        if order.status != "pending":
            raise HTTPException(409, f"order {order_id} is {order.status} already")
        member = await session.get(Member, order.member_id)
        address, credit = member.address, member.credit_cents
    if not address:
        raise HTTPException(422, "the member has no delivery address")
    fee = await quote_delivery(http, settings, address)
    total = order.price_cents + fee
    if credit < total:
        raise HTTPException(402, f"not enough credit for {total / 100:.2f}")
    async with sessions() as session, session.begin():
        await session.execute(update(Order).where(Order.id == order_id).values(status="paid", fee_cents=fee))
        await session.execute(update(Member).where(Member.id == order.member_id)
                              .values(credit_cents=Member.credit_cents - total))
        session.add(LedgerEntry(member_id=order.member_id, order_id=order_id, amount_cents=-total,
                                memo=f"box {order.box}, order {order_id}"))
    # After the response: the receipt, then the courier.
    background.add_task(send_receipt, request.app, order_id)
    background.add_task(book_delivery, request.app, order_id)
    order.status, order.fee_cents = "paid", fee
    return order_out(order)


# --- the bank statement ---------------------------------------------------------------------------------------

class BadLine(ValueError):
    pass


DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def statement_row(fields: list[str]) -> dict:
    if len(fields) != len(STATEMENT_HEADER):
        raise BadLine(f"expected {len(STATEMENT_HEADER)} fields ({','.join(STATEMENT_HEADER)}), got {len(fields)}")
    booked_on, bank_ref, member_id, amount, memo = (f.strip() for f in fields)
    if not DATE.match(booked_on):
        raise BadLine(f"booked_on must be a date like 2026-11-30, not {booked_on[:20]!r}")
    if not 1 <= len(bank_ref) <= 40:
        raise BadLine("bank_ref must have 1 to 40 characters")
    if not (member_id.isascii() and member_id.isdigit() and 1 <= len(member_id) <= 18):
        raise BadLine(f"member_id must be a member's number, not {member_id[:20]!r}")
    if not (amount.isascii() and amount.isdigit() and 1 <= len(amount) <= 9 and int(amount) > 0):
        raise BadLine(f"amount_cents must be a positive whole number of cents, not {amount[:20]!r}")
    return {"member_id": int(member_id), "amount_cents": int(amount), "bank_ref": bank_ref, "memo": memo[:200]}


def bad_statement(reason: str) -> HTTPException:
    return HTTPException(422, f"{reason}; nothing was imported")


async def load_statement(session: AsyncSession, reader: Iterator[list[str]]) -> dict:
    """Every transfer of the statement into the ledger, and each member's credit raised by their
    transfers, in the caller's transaction. A bad line is a 422 that names it."""
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != STATEMENT_HEADER:
        raise bad_statement(f"line 1: the header must be {','.join(STATEMENT_HEADER)}")
    credited: dict[int, int] = {}
    first_line: dict[int, int] = {}
    rows, batch, line = 0, [], 1
    try:
        for fields in reader:
            line = reader.line_num
            row = statement_row(fields)
            credited[row["member_id"]] = credited.get(row["member_id"], 0) + row["amount_cents"]
            first_line.setdefault(row["member_id"], line)
            batch.append(row)
            if len(batch) == BATCH_ROWS:
                await session.execute(insert(LedgerEntry), batch)
                rows, batch = rows + len(batch), []
        if batch:
            await session.execute(insert(LedgerEntry), batch)
            rows += len(batch)
    except BadLine as exc:
        raise bad_statement(f"line {line}: {exc}") from None
    except csv.Error as exc:
        raise bad_statement(f"line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError:
        raise bad_statement("the file is not UTF-8 text") from None
    except IntegrityError:
        raise HTTPException(409, "a transfer of this statement was imported before; nothing was imported") from None
    known = set((await session.scalars(select(Member.id).where(Member.id.in_(list(credited))))).all())
    unknown = sorted(set(credited) - known, key=first_line.get)
    if unknown:
        raise bad_statement(f"line {first_line[unknown[0]]}: no member {unknown[0]}")
    members = Member.__table__
    raise_credit = update(members).where(members.c.id == bindparam("m")) \
        .values(credit_cents=members.c.credit_cents + bindparam("c"))
    await session.execute(raise_credit, [{"m": m, "c": c} for m, c in credited.items()])
    return {"rows": rows, "credited_cents": sum(credited.values()), "members": len(credited)}


@app.post("/imports/statements", max_body_size=MAX_STATEMENT_BYTES)
async def import_statement(file: UploadFile, request: Request) -> dict:
    content_type = (file.content_type or "").split(";")[0].strip().lower()
    if content_type not in CSV_TYPES:
        raise HTTPException(415, f"expected the statement as CSV (text/csv), got {content_type or 'no type'}")
    data = await file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_statement("the file is not UTF-8 text") from None
    async with request.app.state.sessions() as session, session.begin():
        return await load_statement(session, csv.reader(io.StringIO(text, newline="")))
