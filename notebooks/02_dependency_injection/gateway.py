"""Three versions of the same gateway endpoint: it asks the upstream for a price.

* ``leaky_app``        builds a new ``httpx.AsyncClient`` per request and never closes it;
* ``per_request_app``  builds a new client per request and closes it (``async with``);
* ``shared_app``       builds one client in ``lifespan``, closes it on shutdown, and hands it
                       to endpoints through the ``get_client`` dependency;
* ``cached_app``       builds one client the first time ``get_cached_client()`` is called
                       (``functools.lru_cache``) and never closes it.

The upstream's address comes from the environment: ``GATEWAY_UPSTREAM_URL``.
"""

from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, AsyncIterator

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")
    upstream_url: str
    upstream_timeout: float = 10.0


@lru_cache
def get_settings() -> Settings:
    return Settings()


SettingsDep = Annotated[Settings, Depends(get_settings)]
# Checked before it goes into the upstream's URL: a control character would make httpx raise
# InvalidURL (a 500), and "/" or ".." would reach another path of the upstream.
Symbol = Annotated[str, Path(pattern=r"^[A-Z]{1,12}$")]


def answer(response: httpx.Response) -> dict:
    if response.status_code == 404:
        raise HTTPException(404, response.json()["detail"])
    if response.is_error:
        raise HTTPException(502, f"upstream answered {response.status_code}")
    return response.json()


# --- 1. a new client per request, never closed ------------------------------------------
leaky_app = FastAPI()


@leaky_app.get("/quote/{symbol}")
async def leaky_quote(symbol: Symbol, settings: SettingsDep) -> dict:
    client = httpx.AsyncClient(base_url=settings.upstream_url, timeout=settings.upstream_timeout)
    return answer(await client.get(f"/prices/{symbol}"))


# --- 2. a new client per request, closed -------------------------------------------------
per_request_app = FastAPI()


@per_request_app.get("/quote/{symbol}")
async def per_request_quote(symbol: Symbol, settings: SettingsDep) -> dict:
    async with httpx.AsyncClient(base_url=settings.upstream_url, timeout=settings.upstream_timeout) as client:
        return answer(await client.get(f"/prices/{symbol}"))


# --- 3. one client, owned by the lifespan, handed out by a dependency ---------------------
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=settings.upstream_url, timeout=settings.upstream_timeout,
                                 limits=limits) as client:
        app.state.client = client
        yield
    # leaving "async with" closed the client and every pooled connection


def get_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.client


shared_app = FastAPI(lifespan=lifespan)


@shared_app.get("/quote/{symbol}")
async def shared_quote(symbol: Symbol, client: Annotated[httpx.AsyncClient, Depends(get_client)]) -> dict:
    return answer(await client.get(f"/prices/{symbol}"))


# --- 4. one client, cached with lru_cache: built once, closed by nobody ---------------------
@lru_cache
def get_cached_client() -> httpx.AsyncClient:
    settings = get_settings()
    return httpx.AsyncClient(base_url=settings.upstream_url, timeout=settings.upstream_timeout)


cached_app = FastAPI()


@cached_app.get("/quote/{symbol}")
async def cached_quote(symbol: Symbol, client: Annotated[httpx.AsyncClient, Depends(get_cached_client)]) -> dict:
    return answer(await client.get(f"/prices/{symbol}"))
