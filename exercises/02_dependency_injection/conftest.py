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
    # TODO 5: this override hands out a client nobody closes; write it as a yield dependency
    #         (async with httpx.AsyncClient(...) as client: yield client).
    app.dependency_overrides[get_client] = lambda: httpx.AsyncClient(
        transport=httpx.MockTransport(fake_prices), base_url="http://upstream.test"
    )
    yield
    # TODO 6: the override stays set after the test and changes every later test.
    #         Remove this fixture's override, and only this one.
