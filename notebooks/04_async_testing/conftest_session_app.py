"""One app for the whole session: its lifespan (and so its engine) starts once."""

import os

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app import app


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):  # TEST_DATABASE_URL: another database (the notebook's PostgreSQL run)
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def started_app(database_url):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        async with LifespanManager(app) as manager:
            yield manager.app


@pytest_asyncio.fixture
async def client(started_app):
    async with AsyncClient(transport=ASGITransport(app=started_app), base_url="http://test") as c:
        yield c
