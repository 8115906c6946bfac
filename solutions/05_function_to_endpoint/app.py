"""Payments API: the rules of payments.py behind HTTP.

Reference answer for exercise 05 (from a Python function to an endpoint).
"""

import os
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import payments


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    email: Mapped[str]
    password_hash: Mapped[str]
    balance_cents: Mapped[int]


# What a payment request may contain, checked before any of our code runs.
class Card(BaseModel):
    number: str = Field(pattern=r"^[0-9]{13,19}$")
    expiry: str = Field(pattern=r"^(0[1-9]|1[0-2])/[0-9]{2}$")
    cvv: str = Field(pattern=r"^[0-9]{3,4}$")

    @field_validator("number")
    @classmethod
    def passes_luhn(cls, number: str) -> str:
        if not payments.luhn_valid(number):
            raise ValueError("card number fails the Luhn check")
        return number


class PaymentRequest(BaseModel):
    user_id: int = Field(strict=True, ge=1, le=2**63 - 1)  # a JSON integer (not true, not "7") in 64 bits
    amount: Decimal = Field(gt=0, le=1_000_000, decimal_places=2)  # money: exact, whole cents
    card: Card


# What a response may contain; everything else stays on the server.
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


def money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)  # 1250 -> Decimal('12.50')


# The database without blocking the event loop: an async driver, a session per request.
@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(f"sqlite+aiosqlite:///{os.environ.get('PAYMENTS_DB', 'payments.db')}")
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


async def get_session(request: Request):
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

app = FastAPI(title="Payments", lifespan=lifespan)


# Every refusal is a 4xx: invalid input (NaN included) and the rules' errors.
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The default handler echoes each rejected value: a 500 for NaN (JSON cannot carry it).
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


# The email is data, never SQL.
@app.get("/users", response_model=list[UserOut])
async def find_users(email: Annotated[str, Query(max_length=254)], session: SessionDep):
    users = await session.scalars(select(User).where(User.email == email))
    return [UserOut(id=u.id, name=u.name, email=u.email, balance=money(u.balance_cents)) for u in users]


@app.post("/payments", response_model=Receipt)
async def pay(payment: PaymentRequest, session: SessionDep):
    user = await session.get(User, payment.user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {payment.user_id}")
    amount_cents = int(payment.amount * 100)  # exact: a Decimal with at most two places
    try:
        payments.charge(user.balance_cents, amount_cents)  # the rule, on the balance as we read it
        # ...and again where the money moves: the database applies the same rule to the balance as it
        # is when it writes, in one statement. A payment that read a balance another one has spent
        # since matches no row.
        debit = (update(User).where(User.id == user.id, User.balance_cents >= amount_cents)
                 .values(balance_cents=User.balance_cents - amount_cents).returning(User.balance_cents))
        balance_cents = (await session.execute(debit)).scalar_one_or_none()
        if balance_cents is None:
            raise payments.InsufficientFunds(f"{payment.user_id}: spent by another payment meanwhile")
    except payments.InsufficientFunds:
        raise HTTPException(status_code=409, detail="insufficient funds") from None
    await session.commit()
    return Receipt(transaction_id=payments.new_transaction_id(), user_id=user.id,
                   amount=money(amount_cents), balance=money(balance_cents))
