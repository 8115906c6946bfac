"""A price gateway: quotes come from an upstream price service, orders are stored in SQLite.

Configuration (environment variables, or a .env file in the working directory):
    SHOP_UPSTREAM_URL   base URL of the price service      (default http://127.0.0.1:8001)
    SHOP_DATABASE_URL   SQLAlchemy URL of the database     (default sqlite+aiosqlite:///shop.db)
    SHOP_MAX_QUANTITY   largest quantity one order may ask (default 100)

Run it:  uvicorn app:app --port 8000
"""

from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, AsyncIterator

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", env_file=".env")

    upstream_url: str = "http://127.0.0.1:8001"
    upstream_timeout: float = 5.0
    database_url: str = "sqlite+aiosqlite:///shop.db"
    max_quantity: int = 100


@lru_cache
def get_settings() -> Settings:
    """Read the settings once per process; tests call get_settings.cache_clear()."""
    return Settings()


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(12))
    quantity: Mapped[int]
    price: Mapped[float | None]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()  # invalid settings stop the startup, not the first request
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        async with httpx.AsyncClient(base_url=settings.upstream_url, timeout=settings.upstream_timeout) as client:
            app.state.client = client
            yield
        # leaving "async with" closed the client and its connections
    finally:
        await engine.dispose()


def get_client(request: Request) -> httpx.AsyncClient:
    """The one client the lifespan created."""
    return request.app.state.client


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request, closed on every path: when the endpoint raises, closing rolls
    back what it wrote and returns the connection to the pool."""
    async with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[httpx.AsyncClient, Depends(get_client)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

app = FastAPI(title="Price gateway", lifespan=lifespan)


# Bad input is a 422, never a 500. FastAPI's default 422 echoes every rejected value, and a value
# JSON cannot carry (NaN, Infinity, a lone surrogate) turns that answer into a 500. Answer with each
# error's location, message and type only (module 05, section 5: a generated batch of bad requests).
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


class OrderIn(BaseModel):
    symbol: str = Field(min_length=1, max_length=12, pattern=r"^[A-Z]+$")
    quantity: int = Field(gt=0)


# A symbol in the URL is checked like OrderIn.symbol before it goes into the upstream's URL:
# a control character there makes httpx raise InvalidURL (a 500), "/" or ".." would reach
# another path of the upstream. Bad input is answered with a 422.
Symbol = Annotated[str, Path(min_length=1, max_length=12, pattern=r"^[A-Z]+$")]


async def fetch_price(client: httpx.AsyncClient, symbol: str) -> float:
    """Ask the upstream; its failures become 404 or 502, never a 500."""
    try:
        response = await client.get(f"/prices/{symbol}")
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"price service unreachable ({type(exc).__name__})") from None
    if response.status_code == 404:
        raise HTTPException(404, f"unknown symbol {symbol}")
    if response.is_error:
        raise HTTPException(502, f"price service answered {response.status_code}")
    return float(response.json()["price"])


@app.get("/prices/{symbol}")
async def get_price(symbol: Symbol, client: ClientDep) -> dict:
    return {"symbol": symbol, "price": await fetch_price(client, symbol)}


@app.post("/orders", status_code=201)
async def place_order(order: OrderIn, settings: SettingsDep, client: ClientDep, session: SessionDep) -> dict:
    if order.quantity > settings.max_quantity:
        raise HTTPException(422, f"quantity must be at most {settings.max_quantity}")
    row = Order(symbol=order.symbol, quantity=order.quantity)
    session.add(row)
    await session.flush()  # the order is written (not committed yet) and has its id
    row.price = await fetch_price(client, order.symbol)  # if this raises, the write must be undone
    await session.commit()
    return {"id": row.id, "symbol": row.symbol, "quantity": row.quantity, "price": row.price}


@app.get("/orders")
async def list_orders(session: SessionDep) -> dict:
    rows = (await session.scalars(select(Order).order_by(Order.id))).all()
    count = await session.scalar(select(func.count()).select_from(Order))
    return {"count": count, "orders": [{"id": r.id, "symbol": r.symbol, "quantity": r.quantity, "price": r.price}
                                       for r in rows]}
