"""Probe of testclient_without_with.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit, error

from contextlib import asynccontextmanager
from starlette.exceptions import StarletteDeprecationWarning
warnings.simplefilter("ignore", StarletteDeprecationWarning)  # its own entry: testclient-httpx
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
started = []
@asynccontextmanager
async def lifespan(app):
    started.append(True)
    app.state.pool = "pool"
    yield
    del app.state.pool
app = FastAPI(lifespan=lifespan)
@app.get("/pool")
async def pool(request: Request):
    return {"pool": request.app.state.pool}
client = TestClient(app)
try:
    client.get("/pool")
    outcome = {"raised": None}
except AttributeError as exc:
    outcome = error(exc)
outcome["lifespan_ran"] = bool(started)
outcome["server_would_answer"] = TestClient(app, raise_server_exceptions=False).get("/pool").status_code
with TestClient(app) as client:
    outcome["today"] = client.get("/pool").status_code
emit(**outcome)
