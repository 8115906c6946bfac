"""Three ways to call another service from an `async def` endpoint.

* ``/requests/{key}``        ``requests.get``: a blocking client, the loop waits with it;
* ``/client-per-call/{key}`` a new ``httpx.AsyncClient`` per call: async, but a new connection each time;
* ``/shared-client/{key}``   one ``httpx.AsyncClient``, opened in ``lifespan`` and closed on shutdown;
* ``/sized-client/{key}``    the same, with its pool sized for the calls the app makes at once.

The other service's address comes from the environment when the app starts: ``UPSTREAM_URL``.
"""

import os
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import requests
from fastapi import FastAPI, HTTPException, Path, Request

# Checked before it goes into the upstream's URL: letters and digits only.
Key = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,20}$")]


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.upstream_url = os.environ["UPSTREAM_URL"]
    # httpx's default pool: at most 100 connections, of which 20 are kept open between calls
    shared = httpx.AsyncClient(base_url=app.state.upstream_url, timeout=10)
    # sized for up to 100 calls at once, all kept open for the next burst
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    sized = httpx.AsyncClient(base_url=app.state.upstream_url, timeout=10, limits=limits)
    async with shared, sized:  # one pool of connections each, for the app's lifetime
        app.state.client, app.state.sized_client = shared, sized
        yield
    # leaving `async with` closed the clients and their connections


app = FastAPI(title="client calls", lifespan=lifespan)


def answer(status: int, body: dict) -> dict:
    if status != 200:
        raise HTTPException(502, f"the scoring service answered {status}")
    return body


@app.get("/requests/{key}")
async def with_requests(key: Key, request: Request) -> dict:
    response = requests.get(f"{request.app.state.upstream_url}/scores/{key}", timeout=10)  # blocks the loop
    return answer(response.status_code, response.json())


@app.get("/client-per-call/{key}")
async def client_per_call(key: Key, request: Request) -> dict:
    async with httpx.AsyncClient(base_url=request.app.state.upstream_url, timeout=10) as client:
        response = await client.get(f"/scores/{key}")  # a new TCP connection every time
    return answer(response.status_code, response.json())


@app.get("/shared-client/{key}")
async def shared_client(key: Key, request: Request) -> dict:
    response = await request.app.state.client.get(f"/scores/{key}")  # reuses pooled connections
    return answer(response.status_code, response.json())


@app.get("/sized-client/{key}")
async def sized_client(key: Key, request: Request) -> dict:
    response = await request.app.state.sized_client.get(f"/scores/{key}")
    return answer(response.status_code, response.json())
