"""Probe of run_in_executor_bare.yml: runs the old form, prints one JSON line."""

from probekit import emit, error

import asyncio, httpx
from fastapi import FastAPI
def get_user_data(user_id):
    return {"user": user_id}
app = FastAPI()
@app.get("/users/{user_id}")
async def get_user_endpoint(user_id: int):
    return await run_in_executor(None, get_user_data, user_id)  # noqa: F821 (the old form's NameError)
@app.get("/today/{user_id}")
async def today_endpoint(user_id: int):
    return await asyncio.to_thread(get_user_data, user_id)
async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            await client.get("/users/1")
            outcome = {"raised": None}
        except Exception as exc:
            outcome = error(exc)
        outcome["today"] = (await client.get("/today/1")).json()
    quiet = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=quiet, base_url="http://test") as client:
        outcome["status"] = (await client.get("/users/1")).status_code
    return outcome
async def loop_runs_meanwhile(bridge):
    """True if the loop runs other code while the blocking function waits in its thread:
    the function waits for an event that only a coroutine on the loop sets."""
    import threading
    released = threading.Event()
    call = asyncio.ensure_future(bridge(lambda: released.wait(5)))
    await asyncio.sleep(0.01)
    released.set()
    return await call
async def bridges():
    loop = asyncio.get_running_loop()
    return [await loop_runs_meanwhile(lambda fn: asyncio.to_thread(fn)),
            await loop_runs_meanwhile(lambda fn: loop.run_in_executor(None, fn))]
emit(**asyncio.run(main()), loop_not_blocked=asyncio.run(bridges()))
