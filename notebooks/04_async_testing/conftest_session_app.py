"""One app for the whole session: its lifespan (and so its engine) starts once."""

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app import app


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def started_app(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}")
        async with LifespanManager(app):
            yield app


@pytest_asyncio.fixture
async def client(started_app):
    async with AsyncClient(transport=ASGITransport(app=started_app), base_url="http://test") as c:
        yield c
