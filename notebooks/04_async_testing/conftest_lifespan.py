"""The app's lifespan entered for every test, on a fresh database file for every test."""

import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app import app


@pytest_asyncio.fixture
async def client(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    async with LifespanManager(app) as manager:  # startup: engine + tables; shutdown: engine.dispose()
        # manager.app: the app plus the lifespan's state in every request's scope
        async with AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as c:
            yield c
