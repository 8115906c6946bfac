"""Probe of sync_create_engine.yml: runs the old form, prints one JSON line."""

from probekit import emit, error

import asyncio
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
engine = create_engine("sqlite+aiosqlite:///:memory:")   # no error here
async_url_accepted = engine.dialect.is_async
try:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    outcome = {"raised": None}
except Exception as exc:
    outcome = error(exc)
finally:
    engine.dispose()
async def today():
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        try:
            engine.create_engine()
        except AttributeError as exc:
            attribute = str(exc)
        async with engine.connect() as conn:
            return attribute, (await conn.execute(text("SELECT 1"))).scalar()
    finally:
        await engine.dispose()
attribute, value = asyncio.run(today())
emit(**outcome, async_url_accepted=async_url_accepted, engine_create_engine=attribute, today=value)
