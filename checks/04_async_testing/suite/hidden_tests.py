"""Hidden tests (the learner does not see them). Every test writes the SAME bookmark and
expects to be alone in the database: if anything a test writes survives it, every later
test fails, in whichever order they run. Each test also records which database file its
session and the app's own engine use, so the grader can compare xdist workers."""

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from app import app

pytestmark = pytest.mark.asyncio

URL = "https://example.com/the-same-url-in-every-test"


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
    line = {"worker": worker, "pid": os.getpid(), "session_db": session_db, "app_db": app_db,
            "app_started": engine is not None, "cwd": os.getcwd()}
    with (Path(folder) / f"records-{worker}.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


@pytest.mark.parametrize("i", range(24))
async def test_alone_in_the_database(client, session, i):
    await _record(session)
    created = await client.post("/bookmarks", json={"url": URL, "title": f"test {i}"})
    assert created.status_code == 201, (
        f"POST /bookmarks answered {created.status_code} {created.text}: an earlier test left this bookmark behind")
    listed = (await client.get("/bookmarks")).json()
    assert [b["title"] for b in listed] == [f"test {i}"], (
        f"GET /bookmarks lists {[b['title'] for b in listed]}: rows from earlier tests are still there")
