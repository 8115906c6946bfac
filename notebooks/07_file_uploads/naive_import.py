"""The import as it is often written: rows are read one at a time (good), but there is no size
limit, every row is trusted, and each batch is committed on its own.

    DATABASE_URL=sqlite+aiosqlite:///catalog.db uvicorn naive_import:app
"""

import csv
import io
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, UploadFile
from sqlalchemy import String, Text, insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BATCH_SIZE = 500


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int]
    description: Mapped[str] = mapped_column(Text)


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


app = FastAPI(title="Catalogue import (naive)", lifespan=lifespan)


@app.post("/imports")  # no size limit
async def import_products(request: Request, file: UploadFile) -> dict:
    text = io.TextIOWrapper(file.file, encoding="utf-8", newline="")
    reader = csv.reader(text)
    next(reader)  # the header
    imported, batch = 0, []
    async with request.app.state.sessionmaker() as session:
        for sku, name, price_cents, description in reader:
            batch.append({"sku": sku, "name": name, "price_cents": int(price_cents), "description": description})
            if len(batch) == BATCH_SIZE:
                await session.execute(insert(Product), batch)
                await session.commit()  # each batch on its own
                imported += len(batch)
                batch = []
        if batch:
            await session.execute(insert(Product), batch)
            await session.commit()
            imported += len(batch)
    text.detach()
    return {"imported": imported}
