"""One app for the session, and every async test moved to the session's loop, from conftest.py alone."""

import os

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pytest_asyncio import is_async_test

from app import app


def pytest_collection_modifyitems(items):
    # The closest asyncio marker decides a test's loop: put one asking for the session's loop first.
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if is_async_test(item):
            item.add_marker(session_loop, append=False)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def started_app(database_url):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        async with LifespanManager(app) as manager:
            yield manager.app


@pytest_asyncio.fixture(loop_scope="session")
async def client(started_app):
    async with AsyncClient(transport=ASGITransport(app=started_app), base_url="http://test") as c:
        yield c
