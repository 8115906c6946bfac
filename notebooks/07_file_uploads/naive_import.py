"""The meter-readings import as it is often written: rows are read one at a time (good), but there
is no size limit, every row is trusted, and each batch is committed on its own.

    DATABASE_URL=sqlite+aiosqlite:///meters.db uvicorn naive_import:app
"""

import csv
import io
import os
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Request, UploadFile
from sqlalchemy import String, Text, insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Reading(Base):
    __tablename__ = "readings"
    id: Mapped[int] = mapped_column(primary_key=True)
    meter: Mapped[str] = mapped_column(String(32))
    read_at: Mapped[datetime]
    wh: Mapped[int]
    note: Mapped[str] = mapped_column(Text)


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


app = FastAPI(title="Meter readings import (naive)", lifespan=lifespan)


@app.post("/imports")  # no size limit
async def import_readings(request: Request, file: UploadFile) -> dict:
    reader = csv.DictReader(io.TextIOWrapper(file.file, encoding="utf-8", newline=""))
    imported, batch = 0, []
    async with request.app.state.sessionmaker() as session:
        for row in reader:
            row["read_at"], row["wh"] = datetime.fromisoformat(row["read_at"]), int(row["wh"])
            batch.append(row)
            if len(batch) == 1000:
                await session.execute(insert(Reading), batch)
                await session.commit()  # each batch on its own
                imported, batch = imported + len(batch), []
        if batch:
            await session.execute(insert(Reading), batch)
            await session.commit()
            imported += len(batch)
    return {"imported": imported}
