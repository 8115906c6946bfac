"""course.queue_lesson: the harness notebook 08 reads its files, logs and brokers with."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from course.queue_lesson import (check_at_most_once, lines_of, log_time, messages_in, outcome, post_while_down, rows,
                                 seconds_between)
from course.queues import sqlite_broker


def test_rows_of_a_file_or_table_that_is_not_there_yet(tmp_path: Path) -> None:
    assert rows(tmp_path / "none.db", "SELECT 1") == []
    db = tmp_path / "a.db"
    sqlite3.connect(db).close()
    assert rows(db, "SELECT * FROM missing") == []


def test_lines_of_finds_a_part_and_drops_trailing_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "demo.py"
    f.write_text("a = 1\n# --- part 2\nb = 2\n\n\n# --- part 3\nc = 3\n")
    assert lines_of(f, before="# --- part 2") == (1, 1)
    assert lines_of(f, "# --- part 2", "# --- part 3") == (2, 3)
    assert lines_of(f, "# --- part 3") == (6, 7)


def test_log_time_reads_a_worker_line() -> None:
    log = ("[2026-12-07 15:03:24,011: ERROR/MainProcess] Process 'ForkPoolWorker-1' exited\n"
           "[2026-12-07 15:03:25,220: ERROR/MainProcess] Task handler raised error: WorkerLostError\n")
    assert seconds_between(log, "exited", "WorkerLostError") == 1.21
    with pytest.raises(LookupError, match="1 line"):
        log_time(log, "exited", nth=1)


def test_messages_in_decodes_what_a_sqlite_broker_keeps(tmp_path: Path) -> None:
    with sqlite_broker(tmp_path / "b") as broker:
        result = broker.client().send_task("count", args=["ada", 3])
        state, waited = outcome(result, within=0.1)  # no worker: never an outcome, and no exception
        kept = messages_in(broker.url.split("///", 1)[1])
    assert state == "PENDING" and waited >= 0.1
    assert kept == [{"visible": True, "task": "count", "id": result.id, "args": ["ada", 3]}]


def test_post_while_down_sends_while_the_broker_refuses(tmp_path: Path) -> None:
    import httpx
    import kombu.exceptions
    from celery import Celery
    from fastapi import FastAPI, HTTPException

    import course

    with sqlite_broker(tmp_path / "b") as broker:
        sender = Celery("s", broker=broker.url + "?timeout=0.1", set_as_current=False)
        sender.conf.task_default_queue = broker.queue
        app = FastAPI()

        @app.post("/send")
        def send() -> dict:
            try:
                return {"id": sender.send_task("x", retry=False).id}
            except kombu.exceptions.OperationalError:
                raise HTTPException(503) from None

        with course.serve_in_thread(app) as server:
            down = asyncio.run(post_while_down(broker, server.url, ["/send", "/send"], json=None))
            up = httpx.post(server.url + "/send").status_code  # the broker is back
        sender.close()
    assert down == [503, 503] and up == 200


def test_check_at_most_once_accepts_a_claim_and_rejects_a_plain_call(tmp_path: Path) -> None:
    import os
    import threading

    lock, sent = threading.Lock(), []
    claimed: set[str] = set()

    def once(key: str) -> None:
        with lock:
            if key in claimed:
                return
            claimed.add(key)
        sent.append(key)

    count = lambda: {k: sent.count(k) for k in set(sent)}  # noqa: E731
    check_at_most_once(once, {"X_TEST": str(tmp_path)}, count)
    assert os.environ.get("X_TEST") is None  # the environment is put back
    sent.clear()
    with pytest.raises(AssertionError, match="one per key"):
        check_at_most_once(sent.append, {}, count)
