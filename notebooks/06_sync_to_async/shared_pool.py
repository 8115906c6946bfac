"""One thread pool serves every sync part of an app: a slow sync dependency can starve the rest.

``current_user`` is a plain ``def`` dependency that calls a vendor's auth SDK, which blocks its
thread for ``SDK_SECONDS``. FastAPI runs a ``def`` dependency in anyio's thread pool (40 threads),
the pool that also runs ``def`` endpoints, ``def`` dependencies such as ``get_settings``, response
validation of ``def`` endpoints, ``UploadFile`` reads and writes and sync ``BackgroundTasks``.
"""

import time
from typing import Annotated

from fastapi import Depends, FastAPI

app = FastAPI(title="shared pool")
SDK_SECONDS = 0.5


def sdk_verify(token: str) -> dict:
    time.sleep(SDK_SECONDS)  # the vendor's auth call: blocks its thread, has no async version
    return {"user": f"owner of {token}"}


def current_user() -> dict:  # a sync dependency: runs in the shared pool
    return sdk_verify("token-123")


def get_settings() -> dict:  # a sync dependency that is quick, but still needs a thread
    return {"region": "eu-west"}


User = Annotated[dict, Depends(current_user)]
# At most 20 calls of the slow dependency at once; the others wait without holding a thread.
CappedUser = Annotated[dict, Depends(current_user, max_concurrency=20)]
Settings = Annotated[dict, Depends(get_settings)]


@app.get("/orders")
async def orders(user: User) -> dict:
    return {"orders": [], **user}


@app.get("/orders-capped")
async def orders_capped(user: CappedUser) -> dict:
    return {"orders": [], **user}


@app.get("/health")
async def health(settings: Settings) -> dict:  # what the load balancer asks every few seconds
    return {"ok": True, **settings}
