"""Probe of asyncclient_app.yml: runs the old form, prints one JSON line."""

from probekit import emit, error

import asyncio, httpx
from fastapi import FastAPI
app = FastAPI()
@app.get("/ping")
async def ping():
    return {"ok": True}
try:
    httpx.AsyncClient(app=app, base_url="http://test")
    outcome = {"raised": None}
except TypeError as exc:
    outcome = error(exc)
async def today():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as ac:
        return (await ac.get("/ping")).status_code
emit(**outcome, today=asyncio.run(today()))
