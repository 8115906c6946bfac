"""Probe of get_event_loop.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit

import asyncio, threading
import httpx
from fastapi import FastAPI
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    created = asyncio.get_event_loop()        # main thread, no loop yet
main_thread = {"new_loop_running": created.is_running(), "warnings": len(caught)}
created.close()
asyncio.set_event_loop(None)
app = FastAPI()
@app.get("/sync")
def sync_endpoint():                          # runs in a worker thread
    asyncio.get_event_loop()
    return {}
async def call_sync_endpoint():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        try:
            await c.get("/sync")
        except RuntimeError as exc:
            return str(exc)
def_endpoint = asyncio.run(call_sync_endpoint())
async def in_coroutine():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = asyncio.get_event_loop()
        result = await loop.run_in_executor(None, sum, [1, 2])
    return loop is asyncio.get_running_loop(), result, len(caught)
same_loop, result, warned = asyncio.run(in_coroutine())
seen = {}
def in_thread():
    try:
        asyncio.get_event_loop()
        seen["thread"] = None
    except RuntimeError as exc:
        seen["thread"] = str(exc)
    try:
        asyncio.get_running_loop()
    except RuntimeError as exc:
        seen["today"] = str(exc)
worker = threading.Thread(target=in_thread, name="worker")
worker.start()
worker.join()
emit(in_coroutine_is_running_loop=same_loop, result=result, warnings=warned, main_thread=main_thread,
     def_endpoint_message=def_endpoint,
     raised="RuntimeError" if seen["thread"] else None, message=seen["thread"], today=seen["today"])
