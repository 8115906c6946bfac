"""Four ways to wait ``seconds`` without blocking the event loop, and what bounds each.

``blocking_call`` stands in for a library with no async version (a vendor SDK, a C extension):
it can only be run in a thread.
"""

import asyncio
import time
from typing import Annotated

from fastapi import FastAPI, Query
from starlette.concurrency import run_in_threadpool

app = FastAPI(title="thread pools")
Seconds = Annotated[float, Query(ge=0, le=0.5)]


def blocking_call(seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


@app.get("/def")
def plain_def(seconds: Seconds = 0.1) -> dict:
    # A plain `def` endpoint: FastAPI runs it in a worker thread (anyio's pool, 40 threads).
    return blocking_call(seconds)


@app.get("/run-in-threadpool")
async def threadpool(seconds: Seconds = 0.1) -> dict:
    # The same pool, called from an `async def` endpoint.
    return await run_in_threadpool(blocking_call, seconds)


@app.get("/run-in-executor")
async def executor(seconds: Seconds = 0.1) -> dict:
    # The event loop's default executor: min(32, cpus + 4) threads. asyncio.to_thread uses it too.
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, blocking_call, seconds)


@app.get("/asyncio-sleep")
async def asyncio_sleep(seconds: Seconds = 0.1) -> dict:
    # No thread at all: the reference.
    await asyncio.sleep(seconds)
    return {"slept": seconds}
