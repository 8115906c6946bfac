"""Section 7's fix, a transactional outbox: the photo's row and the message to send are written in
one transaction; a relay thread publishes what the outbox holds, and keeps a message until the
broker has taken it.

    BROKER_URL=... RESULT_BACKEND=... PHOTOS_DB=... JOURNAL_DB=... \
        uvicorn --factory outbox:create_app
"""

import sqlite3
import threading
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from kombu.exceptions import OperationalError

import photos
from photos_api import PhotoId, Upload, add_status_route

OUTBOX = """CREATE TABLE IF NOT EXISTS outbox (task_id TEXT PRIMARY KEY, photo_id TEXT NOT NULL,
                                               sent_at REAL)"""


def save_with_message(photo_id: str, owner: str) -> str:
    """The photo's row and the message to send, in one transaction: both or neither. Returns the
    task id, chosen now, so that the client can poll before the task is sent."""
    task_id = str(uuid.uuid4())
    with photos.transaction() as db:
        db.execute(OUTBOX)
        photos.insert(db, photo_id, owner)
        db.execute("INSERT INTO outbox (task_id, photo_id) VALUES (?, ?)", (task_id, photo_id))
    return task_id


def relay_once(tasks) -> int:
    """Publish the outbox's unsent messages, oldest first; returns how many went out. A message
    the broker refuses stays for the next round."""
    db = photos.connect("PHOTOS_DB")
    try:
        db.execute(OUTBOX)
        pending = db.execute("SELECT task_id, photo_id FROM outbox WHERE sent_at IS NULL"
                             " ORDER BY rowid").fetchall()
        for n, (task_id, photo_id) in enumerate(pending):
            try:  # no retry here: the next round is the retry
                tasks.process_photo.apply_async((photo_id,), task_id=task_id, retry=False)
            except OperationalError:
                return n  # the broker is down
            # A crash right here sends it again after the restart: the task must be idempotent.
            db.execute("UPDATE outbox SET sent_at = ? WHERE task_id = ?", (time.time(), task_id))
        return len(pending)
    finally:
        db.close()


def create_app(tasks=None, *, every: float = 0.2) -> FastAPI:
    """photos_api's API with an outbox; the relay runs every `every` seconds, in a thread that the
    lifespan starts and stops."""
    if tasks is None:
        import tasks

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()

        def relay() -> None:
            while not stop.wait(every):
                relay_once(tasks)

        thread = threading.Thread(target=relay, name="outbox-relay")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    app = FastAPI(title="Photos", lifespan=lifespan)

    @app.post("/photos/{photo_id}", status_code=202)
    def upload(photo_id: PhotoId, body: Upload, request: Request) -> dict:
        try:
            task_id = save_with_message(photo_id, body.owner)
        except sqlite3.IntegrityError:
            raise HTTPException(409, f"photo {photo_id} exists already") from None
        status_url = str(request.url_for("task_status", task_id=task_id))
        return {"task_id": task_id, "status_url": status_url}

    add_status_route(app, tasks.app)
    return app
