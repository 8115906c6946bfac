"""Hidden tests (the learner does not see them): each reaches a part of the contract the given
tests do not. They run after the given tests in the usual order (before them in reverse order).

* Tests that write the SAME bookmark, and a row in a table the given tests never touch, and
  expect to be alone: if anything a test writes survives it, the next one fails, in either order.
* A test that rolls back its own session keeps its transaction: what it wrote before is still
  there, and what it writes after is gone in the next test.
* A burst of requests at once through the client, more than the app's pool holds. It is the last
  test of the first pass and the first of the reversed one: the next test after a burst is a burst.

The alone-tests also record which database file their session and the app's own engine use, so
the grader can compare xdist workers. (The event loop each test runs on is noted by the probe
plugin.)"""

import asyncio
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from app import Base, Bookmark, app

pytestmark = pytest.mark.asyncio

URL = "https://example.com/the-same-url-in-every-test"
BURST = 30  # requests at once: more than the app's pool holds (5 + 10 overflow), so some wait for one


async def _record(session) -> None:
    folder = os.environ.get("COURSE04_RECORD_DIR")
    if not folder:
        return
    rows = (await session.execute(text("PRAGMA database_list"))).all()
    session_db = next((row[2] for row in rows if row[1] == "main"), "")
    engine = getattr(app.state, "engine", None)
    app_db = None if engine is None else (engine.url.database or "")
    # Compare real paths ("./test.db" and "/tmp/.../test.db" can be the same file); "" is :memory:.
    session_db = os.path.realpath(session_db) if session_db else ""
    app_db = os.path.realpath(app_db) if app_db and app_db != ":memory:" else app_db
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    line = {"worker": worker, "session_db": session_db, "app_db": app_db, "app_started": engine is not None}
    with (Path(folder) / f"records-{worker}.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


@pytest.mark.parametrize("i", range(4))
async def test_alone_in_the_database(client, session, i):
    await _record(session)
    created = await client.post("/bookmarks", json={"url": URL, "title": f"test {i}"})
    assert created.status_code == 201, (
        f"POST /bookmarks answered {created.status_code} {created.text}: an earlier test left this bookmark behind")
    listed = (await client.get("/bookmarks")).json()
    assert [b["title"] for b in listed] == [f"test {i}"], (
        f"GET /bookmarks lists {[b['title'] for b in listed]}: rows from earlier tests are still there")


def _untouched_table():
    """A table of the app's schema that the given tests never write to."""
    others = [t for t in Base.metadata.sorted_tables if t.name != Bookmark.__tablename__]
    assert others, "the app has only the bookmarks table (the checks run it with EXTRA_TABLES=20)"
    return others[0]


@pytest.mark.parametrize("i", range(2))
async def test_alone_in_another_table(session, i):
    table = _untouched_table()
    rows = list(await session.scalars(select(table.c.name)))
    assert rows == [], f"table {table.name} holds {rows}: what an earlier test committed there is still there"
    await session.execute(insert(table).values(name=f"row of test {i}"))
    await session.commit()


@pytest.mark.parametrize("i", range(2))
async def test_rollback_inside_a_test(client, session, i):
    before = [b["title"] for b in (await client.get("/bookmarks")).json()]
    assert before == [], f"GET /bookmarks lists {before}: what an earlier test wrote after a rollback() is still there"
    session.add(Bookmark(url="https://example.com/kept", title="written before the rollback"))
    await session.commit()
    session.add(Bookmark(url="https://example.com/kept", title="the same URL again"))
    with pytest.raises(IntegrityError):
        await session.commit()
    await session.rollback()  # undoes the failed flush only
    created = await client.post("/bookmarks", json={"url": "https://example.com/after", "title": f"after {i}"})
    assert created.status_code == 201, created.text
    titles = [b["title"] for b in (await client.get("/bookmarks")).json()]
    assert titles == ["written before the rollback", f"after {i}"], (
        f"after session.rollback(), GET /bookmarks lists {titles}: the rollback undid more than the failed commit")


async def test_burst_of_requests(client):
    answers = await asyncio.gather(*(client.get("/health") for _ in range(BURST)))
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * BURST, f"{BURST} x GET /health at once answered {statuses}"
