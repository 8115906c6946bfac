"""Product catalogue import: POST /imports takes a CSV upload and stores its rows.

Exercise 07 (file uploads in constant memory). It works for a small file. A big one takes the
file's size in memory several times over and holds the event loop while it parses, there is no
size limit, a bad row gives a 500 and leaves the rows before it imported. Read README.md, fix the
four TODOs, then run `course check 07`.
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


# TODO 1: nothing limits the upload's size: a client can send gigabytes, which the server writes to
# its disk before this function even starts. Answer 413 when the body is over MAX_UPLOAD_BYTES,
# counted while it arrives (a Content-Length header may be missing or wrong).
@app.post("/imports")
async def import_products(request: Request, file: UploadFile) -> dict:
    # TODO 3: check the upload's media type (415 unless it is one of CSV_TYPES), and turn every
    # bad row or unreadable file into a 422 whose detail names the line of the file as "line <n>"
    # (the header is line 1). Never a 500.
    # TODO 2: this holds the whole file in memory three times (bytes, text, a list of rows), and
    # parses it on the event loop: no other request is answered meanwhile. The upload is already
    # in a temporary file: read it row by row, off the loop, and insert in batches.
    data = await file.read()
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    imported, batch = 0, []
    async with request.app.state.sessionmaker() as session:
        for fields in rows[1:]:
            batch.append(product_values(fields))
            if len(batch) == BATCH_SIZE:
                await session.execute(insert(Product), batch)
                # TODO 4: a commit per batch keeps the batches before a bad row. Import the whole
                # file in one transaction, so that a bad file imports nothing.
                await session.commit()
                imported += len(batch)
                batch = []
        if batch:
            await session.execute(insert(Product), batch)
            await session.commit()
            imported += len(batch)
    return {"imported": imported}


@app.get("/products/count")
async def count_products(request: Request) -> dict:
    async with request.app.state.sessionmaker() as session:
        return {"count": await session.scalar(select(func.count()).select_from(Product))}
