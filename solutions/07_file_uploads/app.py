"""Product catalogue import: POST /imports takes a CSV upload and stores its rows.

Reference answer for exercise 07 (file uploads in constant memory).
"""

import csv
import os
from collections.abc import Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, UploadFile
from sqlalchemy import String, Text, func, insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.concurrency import run_in_threadpool

# The largest request body the import accepts, in bytes (the checks set a small one).
MAX_UPLOAD_BYTES = int(os.environ.get("MAX_UPLOAD_BYTES", str(50 * 1024 * 1024)))
BATCH_SIZE = 500  # rows per INSERT
HEADER = ["sku", "name", "price_cents", "description"]
CSV_TYPES = {"text/csv", "text/plain", "application/vnd.ms-excel"}  # what browsers send for a .csv file


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int]
    description: Mapped[str] = mapped_column(Text)


class BadRow(ValueError):
    """A row that cannot be imported."""


def product_values(fields: list[str]) -> dict:
    """One CSV row as the values of a Product, or BadRow saying what is wrong with it."""
    if len(fields) != len(HEADER):
        raise BadRow(f"expected {len(HEADER)} fields ({','.join(HEADER)}), got {len(fields)}")
    sku, name, price_cents, description = (f.strip() for f in fields)
    if not sku or len(sku) > 64:
        raise BadRow("sku must have 1 to 64 characters")
    if not name or len(name) > 200:
        raise BadRow("name must have 1 to 200 characters")
    if not price_cents.isascii() or not price_cents.isdigit() or len(price_cents) > 12:
        raise BadRow(f"price_cents must be a whole number of cents, not {price_cents[:20]!r}")
    return {"sku": sku, "name": name, "price_cents": int(price_cents), "description": description}


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///catalog.db"))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(title="Catalogue import", lifespan=lifespan)


class BadFile(ValueError):
    """The upload cannot be imported; the message names the line of the file (the header is 1)."""


def text_lines(binary) -> Iterator[str]:
    """The upload's lines, decoded one at a time: a line that is not UTF-8 is named by its number,
    and a character is never split (a line ends at a newline byte, never inside a character)."""
    for number, raw in enumerate(binary, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadFile(f"line {number}: the file is not UTF-8 text") from None


def read_batch(reader) -> list[dict]:
    """The next BATCH_SIZE rows as products (fewer at the end of the file). It reads the spooled
    file and parses, so it runs in a worker thread: the event loop answers other requests."""
    batch = []
    try:
        if reader.line_num == 0:  # the first call: the header
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != HEADER:
                raise BadFile(f"line 1: the header must be {','.join(HEADER)}")
        for fields in reader:
            try:
                batch.append(product_values(fields))
            except BadRow as exc:
                raise BadFile(f"line {reader.line_num}: {exc}") from None
            if len(batch) == BATCH_SIZE:
                break
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB)
        raise BadFile(f"line {reader.line_num}: {exc}") from None
    return batch


# max_body_size: FastAPI counts the body's bytes as they arrive, while it parses the upload, and
# answers 413 as soon as there are too many (or at once, from a Content-Length that is too big).
@app.post("/imports", max_body_size=MAX_UPLOAD_BYTES)
async def import_products(request: Request, file: UploadFile) -> dict:
    # The media type alone, without parameters ("text/csv; charset=utf-8"), in lower case.
    media_type = (file.content_type or "").split(";")[0].strip().lower()
    if media_type not in CSV_TYPES:
        raise HTTPException(status_code=415, detail=f"expected a CSV file (text/csv), got {media_type or 'no type'}")
    reader = csv.reader(text_lines(file.file))  # rows from the spooled upload, a line at a time
    imported = 0
    try:
        # One transaction for the whole file: a bad row rolls back every batch before it.
        async with request.app.state.sessionmaker() as session, session.begin():
            while batch := await run_in_threadpool(read_batch, reader):
                await session.execute(insert(Product), batch)
                imported += len(batch)
    except BadFile as exc:
        raise HTTPException(status_code=422, detail=f"{exc}; nothing was imported") from None
    return {"imported": imported}


@app.get("/products/count")
async def count_products(request: Request) -> dict:
    async with request.app.state.sessionmaker() as session:
        return {"count": await session.scalar(select(func.count()).select_from(Product))}
