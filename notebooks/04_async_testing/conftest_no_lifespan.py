"""A first try: an async client straight on the app."""

import pytest_asyncio
from httpx import ASGITransport, AsyncClient

from app import app


@pytest_asyncio.fixture  # strict mode: async fixtures need pytest_asyncio's decorator
async def client():
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
        yield c
