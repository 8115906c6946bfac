"""course.grading.writegate: every request of a burst reads before any writes, for real."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

from course.grading.writegate import WriteGate, needs_write_lock


def test_which_statements_need_the_write_lock() -> None:
    assert needs_write_lock("UPDATE t SET x = 1") and needs_write_lock("insert into t values (1)")
    assert needs_write_lock("BEGIN IMMEDIATE") and not needs_write_lock("BEGIN")
    assert needs_write_lock("WITH x AS (SELECT 1) UPDATE t SET y = 2") and not needs_write_lock("SELECT 1")


def test_a_read_modify_write_burst_always_interleaves(tmp_path: Path) -> None:
    """Four threads read a counter, then write counter + 1: with the gate, every one reads 0 first."""
    db = tmp_path / "g.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE c (n INTEGER)")
        conn.execute("INSERT INTO c VALUES (0)")
    gate = WriteGate()
    original = sqlite3.connect
    gate.install()
    try:
        def bump() -> int:
            conn = sqlite3.connect(db, timeout=10)
            try:
                seen = conn.execute("SELECT n FROM c").fetchone()[0]
                with conn:
                    conn.execute("UPDATE c SET n = ?", (seen + 1,))
                return seen
            finally:
                conn.close()

        async def run() -> dict:
            return await gate.burst(db, [asyncio.to_thread(bump) for _ in range(4)])

        burst = asyncio.run(run())
    finally:
        sqlite3.connect = original
        sqlite3.dbapi2.connect = original
    assert burst["answers"] == [0, 0, 0, 0] and burst["waited"] == 4 and burst["all_reached"], burst
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT n FROM c").fetchone()[0] == 1  # four increments, one survives
    assert not [t for t in threading.enumerate() if t.name.startswith("asyncio_")]
