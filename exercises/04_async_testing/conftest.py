"""Fixtures for the bookmarks tests. This is the file you write (see README.md).

The tests use two fixtures:

    client   an httpx.AsyncClient wired to the app, with the app's lifespan entered
    session  an AsyncSession in the same per-test transaction as the app's requests

pytest.ini runs every test and fixture in one event loop for the whole session, so a
session-scoped async fixture (the engine) can be used by every test.
"""

from __future__ import annotations

from typing import AsyncIterator

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager  # noqa: F401  (you will need it)
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event  # noqa: F401  (you will need it)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine  # noqa: F401

from app import Base, app, get_session  # noqa: F401


@pytest.fixture(scope="session")
def database_url(worker_id: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    # TODO 3: one database per xdist worker. Under `pytest -n 2` two processes run this fixture
    # at the same time; worker_id is "gw0", "gw1", ... ("master" without xdist), and
    # tmp_path_factory.mktemp(...) gives you a fresh folder. Return a sqlite+aiosqlite URL.
    return "sqlite+aiosqlite:///./test.db"


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    # TODO 2 (first half): the SQLite driver recipe, so that a SAVEPOINT lives inside a real transaction:
    # on "connect" set the driver connection's isolation_level to None, and on "begin" emit
    # BEGIN yourself (listen on engine.sync_engine).
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    # TODO 2 (second half): a rollback per test. Open one connection, begin a transaction on it, bind the
    # sessions (this one and the app's, see `client`) to that connection with
    # join_transaction_mode="create_savepoint", and roll the transaction back when the test ends.
    # As it is, what a test commits stays in the database for every later test.
    async with AsyncSession(engine, expire_on_commit=False) as s:
        yield s


@pytest_asyncio.fixture
async def client() -> AsyncIterator[AsyncClient]:
    # TODO 1: httpx.ASGITransport does not run the app's lifespan, so app.state.engine is never
    # created and GET /health fails. Enter the lifespan (LifespanManager(app), or
    # app.router.lifespan_context(app)) with DATABASE_URL set to the test database, and make the
    # app's requests use sessions in the test's transaction: override `get_session` in
    # app.dependency_overrides (and remove the override afterwards).
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
        yield c
