"""Your own tests (run them with: python -m pytest). The course's checks do not read this file."""

import httpx
import pytest

from app import app


@pytest.mark.asyncio
async def test_price_comes_from_the_fake_upstream(fake_upstream):
    transport = httpx.ASGITransport(app=app)  # no lifespan: get_client must be overridden
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        response = await client.get("/prices/ACME")
    assert response.status_code == 200
    assert response.json() == {"symbol": "ACME", "price": 42.0}


def test_no_override_is_left_behind():
    assert app.dependency_overrides == {}
