"""Probe of testclient_httpx.yml: runs the old form, prints one JSON line."""

from probekit import emit, printed_by_default

import asyncio
from contextlib import asynccontextmanager
printed = printed_by_default("from fastapi.testclient import TestClient")  # the first import warns
w = printed[0]
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
import httpx
from asgi_lifespan import LifespanManager
@asynccontextmanager
async def lifespan(app):
    app.state.pool = "pool"
    yield
app = FastAPI(lifespan=lifespan)
@app.get("/pool")
async def pool(request: Request):
    return {"pool": request.app.state.pool}
with TestClient(app) as client:
    works = client.get("/pool").status_code
async def today():
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/pool")).status_code
emit(warning=w.category.__name__, message=str(w.message), user_warning=issubclass(w.category, UserWarning),
     printed_by_default=[x.category.__name__ for x in printed], still_works=works, today=asyncio.run(today()))
