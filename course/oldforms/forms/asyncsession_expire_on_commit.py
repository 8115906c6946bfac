"""Probe of asyncsession_expire_on_commit.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit, error

import asyncio
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
class Base(DeclarativeBase):
    pass
class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
async def main():
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with AsyncSession(engine) as session:
            user = User(name="Alice")
            session.add(user)
            await session.commit()
            try:
                outcome = {"raised": None, "behaviour": user.name}
            except Exception as exc:
                outcome = error(exc)
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            user = User(name="Bob")
            session.add(user)
            await session.commit()
            outcome["today"] = user.name
        return outcome
    finally:
        await engine.dispose()
warnings.simplefilter("ignore", RuntimeWarning)  # the lazy load leaves a coroutine never awaited
emit(**asyncio.run(main()))
