"""The grader's slow baseline: a fresh database file, a fresh engine and the whole schema for
every test (correct isolation, the expensive way). The learner's suite is timed against it."""

from typing import AsyncIterator

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app import Base, app, get_session


@pytest_asyncio.fixture(scope="session")
async def started_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[object]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('app') / 'app.db'}")
        async with LifespanManager(app):
            yield app


@pytest_asyncio.fixture
async def engine(tmp_path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def session(engine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as s:
        yield s


@pytest_asyncio.fixture
async def client(started_app, engine) -> AsyncIterator[AsyncClient]:
    make_session = async_sessionmaker(engine, expire_on_commit=False)

    async def fresh_session() -> AsyncIterator[AsyncSession]:
        async with make_session() as s:
            yield s

    app.dependency_overrides[get_session] = fresh_session
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            yield c
    finally:
        app.dependency_overrides.pop(get_session, None)
