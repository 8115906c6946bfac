"""One engine and one schema per session; every test inside a transaction that is rolled back.

SQLAlchemy's recipe "Joining a Session into an External Transaction", as it reads for most databases.
"""

from pathlib import Path

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app import Base, app, get_session


@pytest.fixture(scope="session")
def database_url():
    return f"sqlite+aiosqlite:///{Path('test.db').resolve()}"  # the test database


@pytest_asyncio.fixture(scope="session")
async def engine(database_url):
    engine = create_async_engine(database_url)

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def connection(engine):
    async with engine.connect() as conn:
        transaction = await conn.begin()  # the outer transaction: never committed
        yield conn
        await transaction.rollback()


@pytest_asyncio.fixture
async def session(connection):
    sessions = async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    async with sessions() as s:
        yield s


@pytest_asyncio.fixture(scope="session")
async def started_app(database_url):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        async with LifespanManager(app) as manager:
            yield manager.app


@pytest_asyncio.fixture
async def client(started_app, connection):
    # Every request gets its own session, on the test's connection: commit = RELEASE SAVEPOINT.
    sessions = async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)

    async def session_in_test_transaction():
        async with sessions() as s:
            yield s

    app.dependency_overrides[get_session] = session_in_test_transaction
    try:
        async with AsyncClient(transport=ASGITransport(app=started_app), base_url="http://test") as c:
            yield c
    finally:
        app.dependency_overrides.pop(get_session, None)  # remove our override only (module 02)
