"""course.probes on a real SQLite file database."""

from __future__ import annotations

import os

import pytest

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from course.probes import ConnectionCounter, MemorySampler, open_file_count, peak_rss_mib, pool_status


@pytest.mark.asyncio
async def test_pool_counters_and_file_handles(tmp_path) -> None:
    db = tmp_path / "p.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}", pool_size=2, max_overflow=0)
    counter = ConnectionCounter(engine)
    async with engine.connect() as c1, engine.connect() as c2:
        await c1.execute(text("select 1"))
        await c2.execute(text("select 1"))
        assert pool_status(engine)["checked_out"] == 2
        assert open_file_count(db) == 2
    assert pool_status(engine)["checked_in"] == 2 and counter.open == 2 and counter.peak == 2
    await engine.dispose()
    assert counter.open == 0 and counter.opened == 2
    assert open_file_count(db) == 0


def test_memory_probes() -> None:
    with MemorySampler(os.getpid(), interval=0.01) as m:
        block = bytearray(50 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
        import time

        time.sleep(0.1)
    assert m.peak > 40 and peak_rss_mib(os.getpid()) >= m.peak * 0.9
    del block
