"""Fixtures for the bookmarks tests (the reference answer).

The tests use two fixtures:

    client   an httpx.AsyncClient wired to the app, with the app's lifespan entered
    session  an AsyncSession in the same per-test transaction as the app's requests

Layout: one database file per xdist worker, its schema created once per session; every test
runs inside a transaction on one connection that is rolled back at the end, so nothing a test
writes survives it, even when the app commits. pytest.ini runs everything in one event loop.
"""

from __future__ import annotations

from typing import AsyncIterator

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app import Base, app, get_session


@pytest.fixture(scope="session")
def database_url(worker_id: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database file per xdist worker ("gw0", "gw1"; "master" without xdist)."""
    path = tmp_path_factory.mktemp("db") / f"test-{worker_id}.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """One engine and one schema for the whole session."""
    engine = create_async_engine(database_url)

    # The SQLite driver recipe: stop the driver from managing transactions itself and emit
    # BEGIN ourselves. Without it, BEGIN is never sent, the first SAVEPOINT opens the
    # transaction, and releasing that savepoint (the app's commit) commits for real.
    @event.listens_for(engine.sync_engine, "connect")
    def _driver_does_not_begin(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _emit_begin(conn):
        conn.exec_driver_sql("BEGIN")

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back when the test ends."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


def _sessions_on(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    # "create_savepoint": a session's commit/rollback only ends its own SAVEPOINT; the outer
    # transaction stays open for the fixture to roll back.
    return async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest_asyncio.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    async with _sessions_on(connection)() as s:
        yield s


@pytest_asyncio.fixture(scope="session")
async def started_app(database_url: str) -> AsyncIterator[object]:
    """The app with its lifespan entered once; its own engine points at the test database."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        async with LifespanManager(app):  # or: async with app.router.lifespan_context(app)
            yield app


@pytest_asyncio.fixture
async def client(started_app, connection: AsyncConnection) -> AsyncIterator[AsyncClient]:
    """Each request gets its own session, on the test's connection (so it is rolled back)."""
    make_session = _sessions_on(connection)

    async def session_in_test_transaction() -> AsyncIterator[AsyncSession]:
        async with make_session() as s:
            yield s

    app.dependency_overrides[get_session] = session_in_test_transaction
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            yield c
    finally:
        app.dependency_overrides.pop(get_session, None)
