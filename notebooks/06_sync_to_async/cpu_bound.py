"""CPU-bound work in an endpoint: a report built in pure Python. It never waits; it only works.

* ``/inline``   the work in the ``async def`` endpoint: it holds the event loop throughout;
* ``/thread``   in anyio's thread pool: the loop gets turns, but the GIL lets one thread run
                Python at a time, so the reports still share one core;
* ``/process``  in a pool of worker processes (made in ``lifespan``): each has its own
                interpreter, and the server process only waits.

Served in a process of its own (``uvicorn cpu_bound:app``): the pool's workers import this module
by name to find ``build_report``.
"""

import asyncio
import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

ROWS = 200_000  # about 0.1 s of CPU for one report


def build_report(rows: int) -> dict:
    """Format `rows` lines and checksum them: pure Python, so it holds the GIL while it runs."""
    checksum = 0
    for i in range(rows):
        line = f"{i:08d},{i * 7919 % 10_007},{i % 97:02d}\n"
        checksum = zlib.crc32(line.encode(), checksum)
    return {"rows": rows, "checksum": checksum, "pid": os.getpid()}


@asynccontextmanager
async def lifespan(app: FastAPI):
    # "spawn": a fresh interpreter per worker. A server has threads, and fork() copies only one.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        loop = asyncio.get_running_loop()
        # start both workers now, not during the first requests
        await asyncio.gather(*(loop.run_in_executor(pool, build_report, 1) for _ in range(2)))
        app.state.pool = pool
        yield


app = FastAPI(title="cpu bound", lifespan=lifespan)


@app.get("/inline")
async def inline() -> dict:
    return build_report(ROWS)  # the loop runs nothing else until it returns


@app.get("/thread")
async def thread() -> dict:
    return await run_in_threadpool(build_report, ROWS)


@app.get("/process")
async def process(request: Request) -> dict:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app.state.pool, build_report, ROWS)
