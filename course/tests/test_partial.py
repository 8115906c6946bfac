"""course.partial: the users table of module 03, the row read back, the column-write audit."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from course.partial import USERS, column_writes, create_users, outcome_grid, read_user


def test_create_and_read_back(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    url = create_users(db)
    assert url == f"sqlite+aiosqlite:///{db}"
    assert read_user(db, 1) == dict(zip(("id", "name", "email", "city", "phone"), USERS[0]))
    assert read_user(db, 999) is None
    assert column_writes(db) == []  # inserting is not updating


def test_required_columns_are_not_null(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    create_users(db)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            conn.execute("UPDATE users SET email = NULL WHERE id = 1")
        except sqlite3.IntegrityError as exc:
            assert str(exc) == "NOT NULL constraint failed: users.email"
        else:
            raise AssertionError("email accepted NULL")


def test_audit_records_every_column_named_even_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    create_users(db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE users SET city = 'Lyon' WHERE id = 1")
        conn.execute("UPDATE users SET name = name, phone = NULL WHERE id = 2")  # name: same value
    assert sorted(column_writes(db, clear=False)) == [(1, "city"), (2, "name"), (2, "phone")]
    assert sorted(column_writes(db)) == [(1, "city"), (2, "name"), (2, "phone")]
    assert column_writes(db) == []  # cleared by the previous call
    assert read_user(db, 2)["phone"] is None and read_user(db, 1)["city"] == "Lyon"


def test_outcome_grid_labels_every_cell() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = outcome_grid({"row a": {"x": ("200", True), "y": ("500", False)}}, title="t")
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["200", "500\n(problem)"]  # the problem is said in words, not only in colour
    assert [p.get_hatch() or "" for p in ax.patches] == ["", "xxx"]  # hatched too
    plt.close("all")


def test_tickets_and_versions(tmp_path: Path) -> None:
    from course.partial import TICKETS, create_tickets, read_ticket, read_version

    db = tmp_path / "tickets.db"
    assert create_tickets(db) == f"sqlite+aiosqlite:///{db}"
    assert read_ticket(db, 1) == dict(zip(("id", "title", "status", "assignee", "due"), TICKETS[0]))
    assert read_version(db, 1) == 1 and read_version(db, 99) is None
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE tickets SET due = NULL, version = version + 1 WHERE id = 2")
    assert column_writes(db) == [(2, "due")]  # the version is not audited
    assert read_version(db, 2) == 2 and read_ticket(db, 2)["due"] is None


def test_strategy_grid_reads_every_row_back(tmp_path: Path) -> None:
    from course.partial import create_tickets, read_ticket, strategy_grid

    made = iter(range(10))

    def fresh_db():
        path = tmp_path / f"t{next(made)}.db"
        return path, create_tickets(path)

    @contextlib.contextmanager
    def serve(changes):
        yield changes  # no server: "patching" writes straight to the database named by DATABASE_URL

    def patch(strategy, path, body):
        import os

        db = os.environ["DATABASE_URL"].split("///", 1)[1]
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            for field, value in strategy(body).items():
                conn.execute(f"UPDATE tickets SET {field} = ? WHERE id = ?", (value, int(path.split("/")[2])))
        return 200

    grid = strategy_grid(serve, {"all": lambda b: b, "none": lambda b: {}},
                         {"t1": ("/tickets/1", {"assignee": "x"}, 200, {"assignee": "x"})}, fresh_db,
                         patch=patch, read=read_ticket)
    assert grid == {"t1": {"all": ('200\nassignee="x"', True), "none": ("200\nnothing changed", False)}}
