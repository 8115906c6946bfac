"""One endpoint that waits the blocking way, one that waits the async way.

Both wait ``seconds`` (0 to 0.5), standing in for any slow call: a query, another service, a file.
"""

import asyncio
import time
from typing import Annotated

from fastapi import FastAPI, Query

app = FastAPI(title="sleeps")
Seconds = Annotated[float, Query(ge=0, le=0.5)]


@app.get("/time-sleep")
async def time_sleep(seconds: Seconds = 0.1) -> dict:
    time.sleep(seconds)  # blocks the event loop: no other request runs meanwhile
    return {"slept": seconds}


@app.get("/asyncio-sleep")
async def asyncio_sleep(seconds: Seconds = 0.1) -> dict:
    await asyncio.sleep(seconds)  # hands the loop back: other requests run meanwhile
    return {"slept": seconds}
