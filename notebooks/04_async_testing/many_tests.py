"""30 tests that each expect to be alone in the database."""

import asyncio

import pytest
from sqlalchemy import func, select

from app import Item

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("i", range(30))
async def test_alone_in_the_database(client, session, i):
    assert (await client.get("/items")).json() == []
    response = await client.post("/items", json={"name": "the same name in every test"})
    assert response.status_code == 201, response.text
    await asyncio.sleep(0.03)  # the rest of a real test's work, its transaction still open
    assert await session.scalar(select(func.count()).select_from(Item)) == 1  # the test sees the app's row
