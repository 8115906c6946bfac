"""Test fixtures for app.py."""

import httpx
import pytest

from app import app, get_client


def fake_prices(request: httpx.Request) -> httpx.Response:
    """A fake price service: every symbol costs 42.0."""
    symbol = request.url.path.rsplit("/", 1)[-1]
    return httpx.Response(200, json={"symbol": symbol, "price": 42.0})


@pytest.fixture
def fake_upstream():
    """Replace the real price service with fake_prices for one test."""

    async def fake_client():
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake_prices), base_url="http://upstream.test") as client:
            yield client

    app.dependency_overrides[get_client] = fake_client
    yield
    app.dependency_overrides.pop(get_client)
