"""Forms from older tutorials, run against today's pinned versions."""

import pytest
from httpx import ASGITransport, AsyncClient

from app import app


@pytest.fixture  # the old way: pytest itself cannot run an async fixture
async def old_client():
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.mark.asyncio
async def test_async_fixture_with_pytest_fixture(old_client):
    assert (await old_client.get("/openapi.json")).status_code == 200


def test_event_loop_fixture(event_loop):  # removed in pytest-asyncio 1.0
    assert event_loop.run_until_complete(app.router.startup()) is None


async def test_without_the_asyncio_marker():  # strict mode: only marked tests are run by pytest-asyncio
    assert True


@pytest.mark.asyncio
async def test_client_with_app_argument():  # removed in httpx 0.28: use transport=ASGITransport(app=app)
    async with AsyncClient(app=app, base_url="http://test") as c:
        assert (await c.get("/openapi.json")).status_code == 200
