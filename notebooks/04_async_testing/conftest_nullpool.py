"""One test engine for the whole session, without a pool; the app's sessions come from it."""

import os

import pytest
import pytest_asyncio
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from app import Base, app, get_session


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):  # TEST_DATABASE_URL: another database (the notebook's PostgreSQL run)
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(database_url):
    # NullPool: every checkout opens a new connection (in the loop that asks), every checkin closes it.
    engine = create_async_engine(database_url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def client(engine):
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def session_from_test_engine():
        async with sessions() as s:
            yield s

    # The override replaces what the app's lifespan provides (its sessionmaker), so the lifespan is not run here.
    app.dependency_overrides[get_session] = session_from_test_engine
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            yield c
    finally:
        app.dependency_overrides.pop(get_session, None)
