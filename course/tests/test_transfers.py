"""course.transfers: notebook 05's database on SQLite, valid IBANs, two workers started at once."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from course.transfers import ACCOUNTS, API_SECRET, balance, iban, seed


def test_seed_and_balance(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    assert seed(db) == f"sqlite+aiosqlite:///{db}"
    assert [balance(db, a[0]) for a in ACCOUNTS] == [a[4] for a in ACCOUNTS]
    assert balance(db, 99) is None
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT secret FROM api_keys").fetchone()[0] == API_SECRET
        assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 0
        assert all(h.startswith("argon2id$") for (h,) in conn.execute("SELECT pin_hash FROM accounts"))
    seed(db)  # again: a fresh file, not a second set of rows
    assert balance(db, 1) == ACCOUNTS[0][4]


def test_iban_check_digits() -> None:
    import importlib.util

    from course.manifest import ROOT

    path = ROOT / "notebooks" / "05_function_to_endpoint" / "transfers.py"
    spec = importlib.util.spec_from_file_location("transfers_rules", path)
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    assert iban("DE", "370400440532013000") == "DE89370400440532013000"  # the usual example
    assert all(rules.iban_valid(a[3]) for a in ACCOUNTS)
    assert not rules.iban_valid("DE89370400440532013001")
