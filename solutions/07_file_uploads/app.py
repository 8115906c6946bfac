"""Product catalogue import: POST /imports takes a CSV upload and stores its rows.

Reference answer for exercise 07 (file uploads in constant memory).
"""

import csv
import io
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, UploadFile
from sqlalchemy import String, Text, func, insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


def bad_file(reason: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"{reason}; nothing was imported")


# max_body_size: FastAPI counts the body's bytes as they arrive, while it parses the upload, and
# answers 413 as soon as there are too many (or at once, from a Content-Length that is too big).
@app.post("/imports", max_body_size=MAX_UPLOAD_BYTES)
async def import_products(request: Request, file: UploadFile) -> dict:
    content_type = (file.content_type or "").split(";")[0].strip().lower()
    if content_type not in CSV_TYPES:
        raise HTTPException(status_code=415, detail=f"expected a CSV file (text/csv), got {content_type or 'no type'}")
    # A text view of the spooled upload: it reads a few KiB at a time, as the rows are asked for.
    text = io.TextIOWrapper(file.file, encoding="utf-8", newline="")
    line = 1
    try:
        reader = csv.reader(text)
        # One transaction for the whole file: a bad row rolls back every batch before it.
        async with request.app.state.sessionmaker() as session, session.begin():
            try:
                header = next(reader, None)
                if header is None or [h.strip().lower() for h in header] != HEADER:
                    raise bad_file(f"line 1: the header must be {','.join(HEADER)}")
                imported, batch = 0, []
                for fields in reader:
                    line = reader.line_num
                    batch.append(product_values(fields))
                    if len(batch) == BATCH_SIZE:
                        await session.execute(insert(Product), batch)
                        imported += len(batch)
                        batch = []
                if batch:
                    await session.execute(insert(Product), batch)
                    imported += len(batch)
            except BadRow as exc:
                raise bad_file(f"line {line}: {exc}") from None
            except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB)
                raise bad_file(f"line {reader.line_num}: {exc}") from None
            except UnicodeDecodeError:  # decoded a block at a time: the line is not known
                raise bad_file("the file is not UTF-8 text") from None
    finally:
        text.detach()  # leave file.file open: FastAPI closes the upload after the response
    return {"imported": imported}


@app.get("/products/count")
async def count_products(request: Request) -> dict:
    async with request.app.state.sessionmaker() as session:
        return {"count": await session.scalar(select(func.count()).select_from(Product))}
