"""A stand-in for a third-party price service: the upstream our gateway calls.

It also counts the TCP connections it accepts. Every connection arrives from its own client
port, so the number of distinct (host, port) pairs seen is the number of connections opened.
"""

from __future__ import annotations

import asyncio
import zlib
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.peers = set()      # (host, port) of every connection seen
    app.state.requests = 0
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/prices/{symbol}")
async def price(symbol: str, request: Request) -> dict:
    request.app.state.peers.add(tuple(request.scope["client"]))
    request.app.state.requests += 1
    await asyncio.sleep(0.005)  # a little network and database time
    if symbol == "NOPE":
        raise HTTPException(404, f"unknown symbol {symbol}")
    cents = 1000 + zlib.crc32(symbol.encode()) % 9000
    return {"symbol": symbol, "price": cents / 100}


@app.get("/stats")
async def stats(request: Request) -> dict:
    return {"connections": len(request.app.state.peers), "requests": request.app.state.requests}


@app.post("/reset")
async def reset(request: Request) -> dict:
    request.app.state.peers.clear()
    request.app.state.requests = 0
    return {"ok": True}
