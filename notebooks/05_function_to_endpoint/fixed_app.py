"""The production version: validated input, bound parameters, domain errors as status codes in one
shape (RFC 9457 problem details), a response model that decides what leaves the server, and the
session through Depends.

Its booking step, `book`, still reads the balance, checks it in Python and writes the new one;
section 7 measures what that costs when transfers arrive at the same moment."""

import asyncio
import os
from contextlib import asynccontextmanager
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from transfers import InsufficientFunds, debit, iban_valid, new_transfer_id

# --- what a request may contain: checked before any of our code runs -------------------------
AccountId = Annotated[int, Field(strict=True, ge=1, le=2**63 - 1)]  # a JSON integer, 8 bytes
Money = Annotated[Decimal, Field(gt=0, le=1_000_000, decimal_places=2)]  # no float, no sub-cent


class Beneficiary(BaseModel):
    name: str = Field(min_length=1, max_length=70)
    iban: str = Field(pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")  # electronic format: no spaces
    bic: str = Field(pattern=r"^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$")

    @field_validator("iban")
    @classmethod
    def check_digits(cls, iban: str) -> str:
        if not iban_valid(iban):
            raise ValueError("the IBAN's check digits do not match (a mistyped character?)")
        return iban


class TransferRequest(BaseModel):
    account_id: AccountId
    amount: Money
    beneficiary: Beneficiary


# --- what a response may contain: everything else is dropped ----------------------------------
class AccountOut(BaseModel):
    id: int
    holder: str
    email: str
    balance: Decimal


class Receipt(BaseModel):
    transfer_id: str
    account_id: int
    amount: Decimal
    balance: Decimal
    to_iban: str


def money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)  # 1250 -> Decimal('12.50')


# --- one shape for every refusal: RFC 9457 problem details -------------------------------------
def problem(status: int, detail: str, **extra) -> JSONResponse:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem(exc.status_code, str(exc.detail))


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own handler echoes each rejected value ("input"): an IBAN in every 422, and a 500
    # for NaN, which JSON cannot carry. Say where and why, not what.
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return problem(422, "the request does not match the schema", errors=errors)


def add_problem_details(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(RequestValidationError, invalid_request)


# --- the database: one engine per app, one session per request --------------------------------
@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(os.environ["TRANSFERS_URL"])
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


async def get_session(request: Request):
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


class UnknownAccount(LookupError):
    pass


async def screen(beneficiary: Beneficiary) -> None:
    """Stands in for the call to the sanctions-screening service: every transfer is screened before
    the money moves. It answers in SCREENING_SECONDS (default 0.05)."""
    await asyncio.sleep(float(os.environ.get("SCREENING_SECONDS", "0.05")))


# --- the business step: plain Python, domain errors, no HTTP ----------------------------------
async def book(session: AsyncSession, request: TransferRequest) -> dict:
    row = (await session.execute(text("SELECT * FROM accounts WHERE id = :id"),
                                 {"id": request.account_id})).mappings().first()
    if row is None:
        raise UnknownAccount(request.account_id)
    cents = int(request.amount * 100)  # exact: a Decimal with at most two places
    left = debit(row["balance_cents"], cents)  # raises InsufficientFunds
    await screen(request.beneficiary)
    await session.execute(text("UPDATE accounts SET balance_cents = :left WHERE id = :id"),
                          {"left": left, "id": request.account_id})
    # Everything we know, internal fields included: the response model picks what leaves.
    return {**row, "transfer_id": new_transfer_id(), "account_id": row["id"],
            "amount": request.amount, "balance": money(left), "beneficiary": request.beneficiary,
            "to_iban": request.beneficiary.iban}


async def booked(book, session: AsyncSession, request: TransferRequest) -> dict:
    """Run a booking step and turn its domain errors into HTTP answers."""
    try:
        return await book(session, request)
    except UnknownAccount:
        raise HTTPException(status_code=404, detail=f"no account {request.account_id}") from None
    except InsufficientFunds:
        raise HTTPException(status_code=409, detail="insufficient funds") from None


def make_app(book=book) -> FastAPI:
    app = FastAPI(title="Transfers", lifespan=lifespan)
    add_problem_details(app)

    @app.get("/accounts/{account_id}", response_model=AccountOut)
    async def read_account(account_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
                           session: SessionDep):
        row = (await session.execute(text("SELECT * FROM accounts WHERE id = :id"),
                                     {"id": account_id})).mappings().first()
        if row is None:
            raise HTTPException(status_code=404, detail=f"no account {account_id}")
        return {**row, "balance": money(row["balance_cents"])}  # pin_hash is in row...

    @app.get("/accounts", response_model=list[AccountOut])
    async def search_accounts(email: Annotated[str, Query(max_length=254)], session: SessionDep):
        rows = await session.execute(text("SELECT * FROM accounts WHERE email = :email"),
                                     {"email": email})
        return [{**row, "balance": money(row["balance_cents"])} for row in rows.mappings()]

    @app.post("/transfers", response_model=Receipt)
    async def transfer_endpoint(request: TransferRequest, session: SessionDep):
        receipt = await booked(book, session, request)
        await session.commit()
        return receipt

    return app


app = make_app()
