"""The production version: validated input, bound parameters, domain errors as status codes,
a response model that decides what leaves the server, and the session through Depends."""

import os
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from payments import InsufficientFunds, charge, luhn_valid, new_transaction_id

# --- what a request may contain: checked before any of our code runs -------------------------
UserId = Annotated[int, Field(ge=1, le=2**63 - 1)]  # fits SQLite's 8-byte INTEGER
Money = Annotated[Decimal, Field(gt=0, le=1_000_000, decimal_places=2)]  # no float, no sub-cent


class Card(BaseModel):
    number: str = Field(pattern=r"^[0-9]{13,19}$")
    expiry: str = Field(pattern=r"^(0[1-9]|1[0-2])/[0-9]{2}$")  # MM/YY
    cvv: str = Field(pattern=r"^[0-9]{3,4}$")

    @field_validator("number")
    @classmethod
    def passes_luhn(cls, number: str) -> str:
        if not luhn_valid(number):
            raise ValueError("card number fails the Luhn check (a mistyped digit?)")
        return number


class PaymentRequest(BaseModel):
    user_id: UserId
    amount: Money
    card: Card


# --- what a response may contain: everything else is dropped ----------------------------------
class UserOut(BaseModel):
    id: int
    name: str
    email: str
    balance: Decimal


class Receipt(BaseModel):
    transaction_id: str
    user_id: int
    amount: Decimal
    balance: Decimal
    card_last4: str


def cents_to_money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)  # 1250 -> Decimal('12.50')


# --- the database: one engine per app, one session per request --------------------------------
@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(f"sqlite+aiosqlite:///{os.environ['PAYMENTS_DB']}")
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


async def get_session(request: Request):
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


class UnknownUser(LookupError):
    pass


# --- the business step: plain Python, domain errors, no HTTP ----------------------------------
async def pay(session: AsyncSession, request: PaymentRequest) -> dict:
    row = (await session.execute(text("SELECT * FROM users WHERE id = :id"), {"id": request.user_id})).mappings().first()
    if row is None:
        raise UnknownUser(request.user_id)
    amount_cents = int(request.amount * 100)  # exact: a Decimal with at most two places
    new_cents = charge(row["balance_cents"], amount_cents)  # raises InsufficientFunds
    await session.execute(text("UPDATE users SET balance_cents = :cents WHERE id = :id"),
                          {"cents": new_cents, "id": request.user_id})
    await session.commit()
    # Everything we know, internal fields included: the response model picks what leaves.
    return {**row, "transaction_id": new_transaction_id(), "user_id": row["id"], "amount": request.amount,
            "balance": cents_to_money(new_cents), "card": request.card, "card_last4": request.card.number[-4:]}


app = FastAPI(title="Payments", lifespan=lifespan)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own handler echoes every rejected value ("input"): the card number of a bad payment
    # in the response, and a 500 for NaN, which JSON cannot carry. Say where and why, not what.
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


@app.get("/users/{user_id}", response_model=UserOut)
async def read_user(user_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep):
    row = (await session.execute(text("SELECT * FROM users WHERE id = :id"), {"id": user_id})).mappings().first()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return {**row, "balance": cents_to_money(row["balance_cents"])}  # password_hash is in row...


@app.get("/users", response_model=list[UserOut])
async def search_users(email: Annotated[str, Query(max_length=254)], session: SessionDep):
    rows = (await session.execute(text("SELECT * FROM users WHERE email = :email"), {"email": email})).mappings()
    return [{**row, "balance": cents_to_money(row["balance_cents"])} for row in rows]


@app.post("/payment", response_model=Receipt)
async def payment_endpoint(request: PaymentRequest, session: SessionDep):
    try:
        return await pay(session, request)
    except UnknownUser:
        raise HTTPException(status_code=404, detail=f"no user {request.user_id}") from None
    except InsufficientFunds:
        raise HTTPException(status_code=409, detail="insufficient funds") from None
