"""The app's lifespan entered for every test, as most tutorials write it: the client on ``app``."""

import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app import app


@pytest_asyncio.fixture
async def client(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    async with LifespanManager(app):  # startup: engine + tables; shutdown: engine.dispose()
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            yield c
