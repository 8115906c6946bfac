"""Lesson plumbing for module 03 (partial updates): a table with required and nullable columns,
the row read back straight from the database, and which columns each UPDATE wrote.

Two tables, one per SQLite file: the lesson's ``tickets`` (an issue tracker) and the exercise's
``users`` (what the checks create):

    from course.partial import create_tickets, read_ticket, column_writes

    url = create_tickets(db)          # tickets 1-6, and an audit of the columns every UPDATE names
    ... PATCH /tickets/1 {"assignee": "ravi"} through a real server ...
    read_ticket(db, 1)                # the row as the database holds it (not as the app says)
    column_writes(db)                 # [(1, "assignee")]: the columns the UPDATE wrote, then cleared

Both tables have a ``version`` column (INTEGER NOT NULL DEFAULT 1) that an app may use for
optimistic concurrency; ``read_ticket``/``read_user`` leave it out (it is the app's business, not
the resource's), ``read_version`` reads it.

The audit is a set of SQLite triggers, ``AFTER UPDATE OF <column>``: SQLite fires one whenever its
column appears in an UPDATE's SET list, whether or not the value changes. So it shows exactly what
an app wrote back, including a column written with the value it had when the app read it (the
write that undoes a concurrent change).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["COLUMNS", "REQUIRED", "NULLABLE", "USERS", "TICKETS", "TICKET_COLUMNS", "create_users", "read_user",
           "create_tickets", "read_ticket", "read_version", "column_writes", "outcome_grid", "strategy_grid"]

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
    (7, "Margaret Hamilton", "margaret@example.com", "Cambridge", "+1 617 555 0112"),
    (8, "Ken Thompson", "ken@example.com", "Murray Hill", "+1 908 555 0134"),
]

TICKET_COLUMNS = ("id", "title", "status", "assignee", "due")
TICKETS: list[tuple[Any, ...]] = [  # id, title (NOT NULL), status (NOT NULL), assignee, due
    (1, "Checkout button does nothing on Safari", "open", "kim", "2026-03-02"),
    (2, "Invoice PDF shows the wrong VAT rate", "in progress", "ravi", "2026-02-20"),
    (3, "Password reset mail arrives twice", "open", "lena", "2026-03-15"),
    (4, "Search ignores accents", "open", "omar", "2026-04-01"),
    (5, "Export times out for big accounts", "blocked", "mei", "2026-03-09"),
    (6, "Error banner unreadable in dark mode", "open", "tom", "2026-02-27"),
]


@dataclass(frozen=True)
class _Table:
    name: str
    required: tuple[str, ...]
    nullable: tuple[str, ...]
    sizes: Mapping[str, int]

    @property
    def columns(self) -> tuple[str, ...]:
        return ("id", *self.required, *self.nullable)

    def schema(self) -> str:
        cols = [f"{c} VARCHAR({self.sizes[c]}) NOT NULL" for c in self.required]
        cols += [f"{c} VARCHAR({self.sizes[c]})" for c in self.nullable]
        return (f"CREATE TABLE {self.name} (\n    id INTEGER PRIMARY KEY,\n    " + ",\n    ".join(cols)
                + ",\n    version INTEGER NOT NULL DEFAULT 1\n);\n"
                "CREATE TABLE column_writes (seq INTEGER PRIMARY KEY AUTOINCREMENT, row_id INTEGER, "
                "column_name TEXT);\n"
                + "".join(f"CREATE TRIGGER audit_{c} AFTER UPDATE OF {c} ON {self.name} BEGIN "
                          f"INSERT INTO column_writes (row_id, column_name) VALUES (new.id, '{c}'); END;\n"
                          for c in (*self.required, *self.nullable)))


_USERS = _Table("users", REQUIRED, NULLABLE, {"name": 100, "email": 200, "city": 100, "phone": 40})
_TICKETS = _Table("tickets", ("title", "status"), ("assignee", "due"),
                  {"title": 200, "status": 20, "assignee": 40, "due": 10})


def _connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def _create(table: _Table, path: str | Path, rows: Iterable[Sequence[Any]]) -> str:
    path = Path(path)
    with contextlib.closing(_connect(path)) as conn:
        conn.executescript(table.schema())
        with conn:  # commits
            marks = ", ".join("?" for _ in table.columns)
            conn.executemany(f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})", rows)
    return f"sqlite+aiosqlite:///{path}"


def _read(table: _Table, path: str | Path, row_id: int) -> dict[str, Any] | None:
    with contextlib.closing(_connect(path)) as conn:
        row = conn.execute(f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE id = ?", (row_id,)).fetchone()
    return dict(row) if row is not None else None


def create_users(path: str | Path, rows: Sequence[tuple[Any, ...]] = USERS) -> str:
    """Create the users table (with its column-write audit) in a new SQLite file and insert
    ``rows``; return the app's ``DATABASE_URL`` (``sqlite+aiosqlite:///...``)."""
    return _create(_USERS, path, rows)


def read_user(path: str | Path, user_id: int) -> dict[str, Any] | None:
    """The user as the database holds it now (a new connection, so nothing cached), or None."""
    return _read(_USERS, path, user_id)


def create_tickets(path: str | Path, rows: Sequence[tuple[Any, ...]] = TICKETS) -> str:
    """Create the tickets table (title and status NOT NULL, assignee and due nullable, a version, the
    column-write audit) in a new SQLite file and insert ``rows``; return its ``DATABASE_URL``."""
    return _create(_TICKETS, path, rows)


def read_ticket(path: str | Path, ticket_id: int) -> dict[str, Any] | None:
    """The ticket as the database holds it now (a new connection, so nothing cached), or None."""
    return _read(_TICKETS, path, ticket_id)


def read_version(path: str | Path, row_id: int) -> int | None:
    """The ``version`` column of the row (of whichever table the file holds), or None."""
    with contextlib.closing(_connect(path)) as conn:
        table = conn.execute("SELECT name FROM sqlite_master WHERE name IN ('users', 'tickets')").fetchone()[0]
        row = conn.execute(f"SELECT version FROM {table} WHERE id = ?", (row_id,)).fetchone()
    return row[0] if row is not None else None


def column_writes(path: str | Path, *, clear: bool = True) -> list[tuple[int, str]]:
    """``(row id, column)`` for every column an UPDATE named since the last call (or since the
    table was created), in the order the triggers fired (within one UPDATE, not the SET list's
    order); ``clear`` empties the audit afterwards. ``version`` is not audited."""
    with contextlib.closing(_connect(path)) as conn, conn:
        found = [(r["row_id"], r["column_name"]) for r in
                 conn.execute("SELECT row_id, column_name FROM column_writes ORDER BY seq")]
        if clear:
            conn.execute("DELETE FROM column_writes")
    return found


def strategy_grid(serve: Callable[[Callable], Any], strategies: Mapping[str, Callable],
                  requests: Mapping[str, tuple[str, Any, int, dict]], fresh_db: Callable[[], tuple[Path, str]],
                  patch: Callable[[str, str, Any], int], read: Callable[[Path, int], dict | None]
                  ) -> dict[str, dict[str, tuple[str, bool]]]:
    """Each strategy on a fresh database, the same requests sent to it, every row read back: the
    cells of :func:`outcome_grid`. ``serve(strategy)`` is a context manager yielding the server's URL
    (the database from ``fresh_db()`` is in ``DATABASE_URL`` while it starts); ``requests`` maps a
    label to ``(path, body, the status it should get, the change it should make)``; ``patch(url,
    path, body)`` sends the request and returns its status. A cell is ``(text, as intended)``."""
    import json

    from course.harness import patched_env

    grid: dict[str, dict[str, tuple[str, bool]]] = {label: {} for label in requests}
    for name, changes in strategies.items():
        db, url = fresh_db()
        with patched_env(DATABASE_URL=url), serve(changes) as base:
            for label, (path, body, want_status, want_change) in requests.items():
                row_id = int(path.split("/")[2])
                before = read(db, row_id)
                status = patch(base, path, body)
                after = read(db, row_id) or {}
                changed = {f: v for f, v in after.items() if before and before[f] != v}
                change_text = ", ".join(f"{f}={json.dumps(v)}" for f, v in changed.items())
                grid[label][name] = (f"{status}\n" + (change_text or "nothing changed"),
                                     status == want_status and changed == want_change)
    return grid


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
