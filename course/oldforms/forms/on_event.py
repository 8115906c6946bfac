"""Probe of on_event.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit, printed_by_default

import asyncio
from contextlib import asynccontextmanager
from fastapi import FastAPI
OLD = """
app = FastAPI()
@app.on_event("startup")
async def connect():
    app.state.ready = True
"""
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    plain = {"FastAPI": FastAPI}
    exec(OLD, plain)
@asynccontextmanager
async def lifespan(app):
    yield
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    mixed = {"FastAPI": lambda: FastAPI(lifespan=lifespan)}
    exec(OLD, mixed)
@asynccontextmanager
async def today_lifespan(app):
    app.state.ready = True
    yield
today = FastAPI(lifespan=today_lifespan)
async def started(app):
    async with app.router.lifespan_context(app):
        return getattr(app.state, "ready", False)
async def main():
    return [await started(app) for app in (plain["app"], mixed["app"], today)]
runs, runs_with_lifespan, today_runs = asyncio.run(main())
w = caught[0]
emit(warning=w.category.__name__, message=" ".join(str(w.message).split()),
     printed_by_default=[x.category.__name__ for x in printed_by_default(OLD, FastAPI=FastAPI)],
     runs=runs, runs_with_lifespan=runs_with_lifespan, today=today_runs)
