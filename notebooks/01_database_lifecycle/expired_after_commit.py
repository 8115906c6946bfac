"""After commit: the default expire_on_commit=True, and an attribute read that needs the database."""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


# A positive id that fits SQLite's 8-byte INTEGER; anything else is bad input (a 422), not a 500
# (a larger number would make the driver raise OverflowError).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


def make_app(**session_options) -> FastAPI:
    """The same app with different sessionmaker options, e.g. make_app(expire_on_commit=False)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = create_async_engine(os.environ["DATABASE_URL"])
        app.state.sessions = async_sessionmaker(engine, **session_options)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session(request: Request):
        async with request.app.state.sessions() as session:
            yield session

    @app.put("/items/{item_id}")
    async def rename_item(item_id: ItemId, name: str, session: Annotated[AsyncSession, Depends(get_session)]):
        item = await session.get(Item, item_id)
        if item is None:
            raise HTTPException(status_code=404, detail=f"no item {item_id}")
        item.name = name
        await session.commit()  # by default this also expires every attribute of `item`...
        return {"id": item.id, "name": item.name}  # ...so reading one here needs a new query

    return app


# Today's form with its default: async_sessionmaker(engine) means expire_on_commit=True.
# (The older AsyncSession(engine) has the same default.)
app = make_app()
