"""Orders, stored with SQLAlchemy (async) in SQLite: what a ``yield`` dependency must clean up.

``create_app(database_url, get_session)`` builds the same app around any session dependency,
so the notebook can run the leaky one and the fixed one side by side. The engine counts what
its pool does: connections checked out, checked back in, and reset (rolled back) on return.
"""

from collections import Counter
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, Callable, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import String, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(12))
    quantity: Mapped[int]


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)


# --- session dependencies ------------------------------------------------------------------

async def get_session_leaky(request: Request) -> AsyncIterator[AsyncSession]:
    """Looks fine, works on the happy path. When the endpoint raises, the exception is
    thrown in at ``yield``, so the line after it never runs: the session is never closed."""
    session = request.app.state.sessionmaker()
    yield session
    await session.close()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """``async with`` closes the session on every path; closing rolls back whatever was not
    committed and returns the connection to the pool."""
    async with request.app.state.sessionmaker() as session:
        yield session


async def get_uow(request: Request) -> AsyncIterator[AsyncSession]:
    """A "unit of work": the endpoint adds, the dependency commits after it returns, and
    turns a duplicate into a 409. When that code runs depends on the scope (see the notebook)."""
    async with request.app.state.sessionmaker() as session:
        yield session
        try:
            await session.commit()
        except IntegrityError:
            raise HTTPException(409, "this email is already registered") from None


# --- the app --------------------------------------------------------------------------------

# Bad input is a 422, never a 500. FastAPI's default 422 echoes every rejected value, and a value
# JSON cannot carry (NaN, Infinity, a lone surrogate) turns that answer into a 500. Answer with each
# error's location, message and type only (module 05, section 5: a generated batch of bad requests).
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


class OrderIn(BaseModel):
    symbol: str = Field(min_length=1, max_length=12)
    quantity: int = Field(gt=0, le=1000)


class UserIn(BaseModel):
    email: str = Field(min_length=3, max_length=120)


def create_app(database_url: str, session_dep: Callable[..., Any] = get_session,
               uow_scope: Literal["request", "function"] = "request") -> FastAPI:
    """``session_dep`` serves /orders; ``get_uow``, with the given scope, serves POST /users."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # timeout=1: a writer waits at most 1 s for SQLite's lock (the default is 5 s)
        engine = create_async_engine(database_url, connect_args={"timeout": 1})
        app.state.pool_events = Counter()
        for name in ("checkout", "checkin", "reset"):
            event.listen(engine.sync_engine.pool, name,
                         lambda *_, name=name: app.state.pool_events.update([name]))
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.engine = engine
        app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, invalid_request)
    Session = Annotated[AsyncSession, Depends(session_dep)]

    @app.post("/orders", status_code=201)
    async def place_order(order: OrderIn, session: Session) -> dict:
        row = Order(symbol=order.symbol, quantity=order.quantity)
        session.add(row)
        await session.flush()          # INSERT sent: this transaction now holds SQLite's write lock
        if order.symbol == "DOWN":     # stands in for a failing call to a price service
            raise HTTPException(502, "price service unavailable, order not placed")
        await session.commit()
        return {"id": row.id, "symbol": row.symbol, "quantity": row.quantity}

    @app.get("/orders/count")
    async def count_orders(session: Session) -> dict:
        return {"orders": await session.scalar(select(func.count()).select_from(Order))}

    @app.post("/users", status_code=201)
    async def register(user: UserIn,
                       session: Annotated[AsyncSession, Depends(get_uow, scope=uow_scope)]) -> dict:
        session.add(User(email=user.email))   # committed by the dependency, after we return
        return {"email": user.email}

    @app.get("/users/count")
    async def count_users(session: Session) -> dict:
        return {"users": await session.scalar(select(func.count()).select_from(User))}

    return app
