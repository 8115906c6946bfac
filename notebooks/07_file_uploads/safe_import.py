"""The fixed meter-readings import: a size limit counted while the body arrives, 415 for a file
that is not a CSV, 422 naming the line, one transaction, and the parsing off the event loop.

    DATABASE_URL=sqlite+aiosqlite:///meters.db MAX_UPLOAD_BYTES=2097152 uvicorn safe_import:app
"""

import csv
import os
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, HTTPException, Request, UploadFile
from sqlalchemy import String, Text, func, insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.concurrency import run_in_threadpool

MAX_UPLOAD_BYTES = int(os.environ.get("MAX_UPLOAD_BYTES", str(50 * 2**20)))  # read at import
BATCH = 1000  # rows per worker-thread call and per INSERT
COLUMNS = ["meter", "read_at", "wh", "note"]
# A media type is compared whole, without its parameters (`text/csv; charset=utf-8`).
CSV_TYPES = {"text/csv", "text/plain", "application/vnd.ms-excel"}


class Base(DeclarativeBase):
    pass


class Reading(Base):
    __tablename__ = "readings"
    id: Mapped[int] = mapped_column(primary_key=True)
    meter: Mapped[str] = mapped_column(String(32))
    read_at: Mapped[datetime]
    wh: Mapped[int]
    note: Mapped[str] = mapped_column(Text)


class BadFile(ValueError):
    """The upload cannot be imported; the message names the line (the header is line 1)."""


def reading(line: int, fields: list[str]) -> dict:
    if len(fields) != len(COLUMNS):
        raise BadFile(f"line {line}: expected {len(COLUMNS)} fields, got {len(fields)}")
    meter, read_at, wh, note = fields
    if not 1 <= len(meter) <= 32:
        raise BadFile(f"line {line}: meter must have 1 to 32 characters")
    try:
        when = datetime.fromisoformat(read_at)
    except ValueError:
        raise BadFile(f"line {line}: read_at must be a date and time, not {read_at[:30]!r}") \
            from None
    if not (wh.isascii() and wh.isdigit()) or len(wh) > 12:
        raise BadFile(f"line {line}: wh must be whole watt-hours, not {wh[:20]!r}")
    return {"meter": meter, "read_at": when, "wh": int(wh), "note": note}


def lines(binary) -> Iterator[str]:
    """The upload's lines as text, one at a time: a line that is not UTF-8 is named by number."""
    for number, raw in enumerate(binary, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadFile(f"line {number}: not UTF-8 text") from None


def check_header(reader) -> None:
    try:
        header = [name.strip().lower() for name in next(reader, [])]
    except csv.Error as exc:
        raise BadFile(f"line 1: {exc}") from None
    if header != COLUMNS:
        raise BadFile(f"line 1: the header must be {','.join(COLUMNS)}")


def next_batch(reader) -> list[dict]:
    """Up to BATCH valid rows: runs in a worker thread (reading the spooled file, parsing)."""
    batch = []
    try:
        for fields in reader:
            batch.append(reading(reader.line_num, fields))
            if len(batch) == BATCH:
                break
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB)
        raise BadFile(f"line {reader.line_num}: {exc}") from None
    return batch


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///meters.db"))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(title="Meter readings import", lifespan=lifespan)


# max_body_size: FastAPI counts the body's bytes as they arrive, while it parses the upload, and
# answers 413 as soon as there are too many (or at once, from a Content-Length that is too big).
@app.post("/imports", max_body_size=MAX_UPLOAD_BYTES)
async def import_readings(request: Request, file: UploadFile) -> dict:
    media_type = (file.content_type or "").partition(";")[0].strip().lower()
    if media_type not in CSV_TYPES:
        raise HTTPException(415, f"expected a CSV file (text/csv), got {media_type or 'no type'}")
    reader = csv.reader(lines(file.file))
    imported = 0
    try:
        # One transaction: a bad line rolls back every batch before it.
        async with request.app.state.sessionmaker() as session, session.begin():
            await run_in_threadpool(check_header, reader)
            while batch := await run_in_threadpool(next_batch, reader):
                await session.execute(insert(Reading), batch)  # the loop is free meanwhile
                imported += len(batch)
    except BadFile as exc:
        raise HTTPException(422, f"{exc}; nothing was imported") from None
    return {"imported": imported}


@app.get("/readings/count")
async def count_readings(request: Request) -> dict:
    async with request.app.state.sessionmaker() as session:
        return {"count": await session.scalar(select(func.count()).select_from(Reading))}
