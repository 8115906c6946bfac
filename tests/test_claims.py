"""Statements the course's READMEs and hints make about the libraries, checked on this Python."""

from __future__ import annotations

import sqlite3


def _survivors(tmp_path, *, isolation_none: bool, begin: bool) -> int:
    path = tmp_path / f"claim-{isolation_none}-{begin}.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    if isolation_none:
        conn.isolation_level = None
    if begin:
        conn.execute("BEGIN")
    conn.execute("SAVEPOINT sa_1")  # what a session with join_transaction_mode="create_savepoint" does
    conn.execute("INSERT INTO t VALUES (1)")
    conn.execute("RELEASE SAVEPOINT sa_1")  # the app's commit
    conn.rollback()  # the test fixture's rollback
    conn.close()
    with sqlite3.connect(path) as check:
        return check.execute("SELECT count(*) FROM t").fetchone()[0]


def test_sqlite_recipe_halves(tmp_path) -> None:
    """exercises/04_async_testing/README.md and HINTS.md: without BEGIN the released savepoint
    commits; with BEGIN (alone or with isolation_level=None) the rollback undoes it."""
    assert _survivors(tmp_path, isolation_none=False, begin=False) == 1
    assert _survivors(tmp_path, isolation_none=True, begin=False) == 1
    assert _survivors(tmp_path, isolation_none=False, begin=True) == 0
    assert _survivors(tmp_path, isolation_none=True, begin=True) == 0
