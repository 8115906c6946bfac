"""The photo service's database, and stand-ins for what lies outside it: the image decoder and the
mail service. Every run of a task and every e-mail sent is written down, so the notebook can count
what really happened, and in which process.

PHOTOS_DB (SQLite) holds the photos (and, in section 7, the outbox): the service's own data.
JOURNAL_DB (SQLite) is the outside world's record: `runs` (each time a task started on a photo)
and `emails` (each e-mail the mail service sent).

The decoder's stand-in: a photo whose id starts with "corrupt-" makes it crash the process (as a
C library running out of memory does: the kernel's OOM killer sends SIGKILL); one whose id starts
with "endless-" makes it loop forever.
"""

import contextlib
import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterator


class PhotoNotFound(LookupError):
    """No committed row for this photo."""


class MailTimeout(Exception):
    """The mail service did not answer in time: worth another try."""


@dataclass
class Photo:
    photo_id: str
    owner: str
    size: int


TABLES = {
    "PHOTOS_DB": """CREATE TABLE IF NOT EXISTS photos (photo_id TEXT PRIMARY KEY,
                                                     owner TEXT NOT NULL, size INTEGER NOT NULL)""",
    "JOURNAL_DB": """CREATE TABLE IF NOT EXISTS runs (photo_id TEXT, pid INTEGER, at REAL);
                     CREATE TABLE IF NOT EXISTS emails (photo_id TEXT, owner TEXT, pid INTEGER,
                                                        at REAL, idempotency_key TEXT UNIQUE);""",
}


def connect(env: str) -> sqlite3.Connection:
    """A connection (autocommit) to the database named by the environment variable `env`."""
    db = sqlite3.connect(os.environ[env], timeout=30, isolation_level=None)
    db.executescript(TABLES[env])
    return db


@contextlib.contextmanager
def transaction() -> Iterator[sqlite3.Connection]:
    """A transaction on PHOTOS_DB: committed when the block ends, rolled back if it raises. Until
    the commit, no other connection (the worker's) sees what it wrote."""
    db = connect("PHOTOS_DB")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def insert(db: sqlite3.Connection, photo_id: str, owner: str) -> None:
    """Write a photo's row on `db` (the caller's transaction)."""
    db.execute("INSERT INTO photos VALUES (?, ?, ?)", (photo_id, owner, 2_400_000))


def add(photo_id: str, owner: str = "ada") -> None:
    """Write a photo's row and commit it."""
    with transaction() as db:
        insert(db, photo_id, owner)


def load(photo_id: str) -> Photo:
    db = connect("PHOTOS_DB")
    try:
        row = db.execute("SELECT photo_id, owner, size FROM photos WHERE photo_id = ?",
                         (photo_id,)).fetchone()
    finally:
        db.close()
    if row is None:
        raise PhotoNotFound(f"no photo {photo_id!r} in the database")
    return Photo(*row)


def count(owner: str) -> int:
    db = connect("PHOTOS_DB")
    try:
        return db.execute("SELECT count(*) FROM photos WHERE owner = ?", (owner,)).fetchone()[0]
    finally:
        db.close()


def record_run(photo_id: str) -> int:
    """Note that a run of a task started here (which process, when); returns the run's number."""
    db = connect("JOURNAL_DB")
    try:
        db.execute("INSERT INTO runs VALUES (?, ?, ?)", (photo_id, os.getpid(), time.time()))
        return db.execute("SELECT count(*) FROM runs WHERE photo_id = ?", (photo_id,)).fetchone()[0]
    finally:
        db.close()


def decode(photo: Photo) -> None:
    """The image decoder: quick, except on the files that break it."""
    if photo.photo_id.startswith("corrupt-"):
        os.kill(os.getpid(), signal.SIGKILL)  # out of memory: the OOM killer ends the process
    if photo.photo_id.startswith("endless-"):
        while True:  # a loop in the decoder that never ends
            time.sleep(0.05)


def mail_owner(photo: Photo, idempotency_key: str | None = None) -> None:
    """The mail service: one row per e-mail sent. Like Resend's Idempotency-Key header, a key it
    has already seen sends nothing (Resend remembers keys for 24 hours)."""
    db = connect("JOURNAL_DB")
    try:
        db.execute("INSERT INTO emails VALUES (?, ?, ?, ?, ?)"
                   " ON CONFLICT (idempotency_key) DO NOTHING",
                   (photo.photo_id, photo.owner, os.getpid(), time.time(), idempotency_key))
    finally:
        db.close()
