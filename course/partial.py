"""Lesson plumbing for module 03 (partial updates): a users table with required and nullable
columns, the row read back straight from the database, and which columns each UPDATE wrote.

    from course.partial import create_users, read_user, column_writes

    url = create_users(db)            # users 1-6, and an audit of the columns every UPDATE names
    ... PATCH /users/1 {"city": "Lyon"} through a real server ...
    read_user(db, 1)                  # the row as the database holds it (not as the app says)
    column_writes(db)                 # [(1, "city")]: the columns the UPDATE wrote, then cleared

The audit is a set of SQLite triggers, ``AFTER UPDATE OF <column>``: SQLite fires one whenever its
column appears in an UPDATE's SET list, whether or not the value changes. So it shows exactly what
an app wrote back, including a column written with the value it had when the app read it (the
write that undoes a concurrent change).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["COLUMNS", "REQUIRED", "NULLABLE", "USERS", "create_users", "read_user", "column_writes", "outcome_grid"]

REQUIRED = ("name", "email")  # NOT NULL
NULLABLE = ("city", "phone")
COLUMNS = ("id", *REQUIRED, *NULLABLE)

USERS: list[tuple[Any, ...]] = [
    (1, "Ada Lovelace", "ada@example.com", "London", "+44 20 7946 0018"),
    (2, "Alan Turing", "alan@example.com", "Manchester", "+44 161 496 0021"),
    (3, "Grace Hopper", "grace@example.com", "Arlington", "+1 703 555 0143"),
    (4, "Edsger Dijkstra", "edsger@example.com", "Eindhoven", "+31 40 555 0102"),
    (5, "Barbara Liskov", "barbara@example.com", "Boston", "+1 617 555 0175"),
    (6, "Donald Knuth", "don@example.com", "Stanford", "+1 650 555 0199"),
]

SCHEMA = """
CREATE TABLE users (
    id    INTEGER PRIMARY KEY,
    name  VARCHAR(100) NOT NULL,
    email VARCHAR(200) NOT NULL,
    city  VARCHAR(100),
    phone VARCHAR(40)
);
CREATE TABLE column_writes (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER, column_name TEXT);
""" + "".join(
    f"CREATE TRIGGER audit_{c} AFTER UPDATE OF {c} ON users BEGIN "
    f"INSERT INTO column_writes (user_id, column_name) VALUES (new.id, '{c}'); END;\n"
    for c in (*REQUIRED, *NULLABLE)
)


def _connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def create_users(path: str | Path, rows: Sequence[tuple[Any, ...]] = USERS) -> str:
    """Create the users table (with its column-write audit) in a new SQLite file and insert
    ``rows``; return the app's ``DATABASE_URL`` (``sqlite+aiosqlite:///...``)."""
    path = Path(path)
    with contextlib.closing(_connect(path)) as conn:
        conn.executescript(SCHEMA)
        with conn:  # commits
            conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)", rows)
    return f"sqlite+aiosqlite:///{path}"


def read_user(path: str | Path, user_id: int) -> dict[str, Any] | None:
    """The row as the database holds it now (a new connection, so nothing cached), or None."""
    with contextlib.closing(_connect(path)) as conn:
        row = conn.execute("SELECT id, name, email, city, phone FROM users WHERE id = ?", (user_id,)).fetchone()
    return dict(row) if row is not None else None


def column_writes(path: str | Path, *, clear: bool = True) -> list[tuple[int, str]]:
    """``(user_id, column)`` for every column an UPDATE named since the last call (or since the
    table was created), in the order the triggers fired (within one UPDATE, not the SET list's
    order); ``clear`` empties the audit afterwards."""
    with contextlib.closing(_connect(path)) as conn, conn:
        found = [(r["user_id"], r["column_name"]) for r in
                 conn.execute("SELECT user_id, column_name FROM column_writes ORDER BY seq")]
        if clear:
            conn.execute("DELETE FROM column_writes")
    return found


def outcome_grid(cells: Mapping[str, Mapping[str, tuple[str, bool]]], *, title: str) -> Any:
    """A grid of outcomes: one row per request, one column per strategy, each cell labelled with
    what happened (``(text, ok)``). A problem cell is hatched and says so in words: the colour is
    never the only signal. Returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    from course.plots import BAD, GOOD, MEANING, style

    style()
    rows = list(cells)
    columns = list(dict.fromkeys(c for row in cells.values() for c in row))
    fig, ax = plt.subplots(figsize=(2.2 * len(columns) + 2.6, 0.85 * len(rows) + 1.2))
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            text, ok = cells[row].get(column, ("", True))
            color = GOOD if ok else BAD
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=color, alpha=0.25 if ok else 0.35,
                                   hatch="" if ok else MEANING[BAD][1], edgecolor="white", linewidth=2))
            ax.text(j + 0.5, i + 0.5, text if ok else f"{text}\n(problem)", ha="center", va="center", fontsize=9)
    ax.set_xlim(0, len(columns))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(columns))], columns)
    ax.xaxis.tick_top()
    ax.set_yticks([i + 0.5 for i in range(len(rows))], rows)
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, pad=28)
    ax.legend(handles=[Patch(facecolor=GOOD, alpha=0.25, label="as intended"),
                       Patch(facecolor=BAD, alpha=0.35, hatch=MEANING[BAD][1], edgecolor="white", label="problem")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return ax
