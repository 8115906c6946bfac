"""40 small API tests, to time the fixtures around them."""

import pytest

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("i", range(40))
async def test_create_then_list(client, i):
    assert (await client.post("/items", json={"name": f"item {i}"})).status_code == 201
    assert [item["name"] for item in (await client.get("/items")).json()] == [f"item {i}"]
