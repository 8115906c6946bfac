"""Four tests of the items API, each correct on its own."""

import pytest

pytestmark = pytest.mark.asyncio


async def test_create_item(client):
    response = await client.post("/items", json={"name": "widget"})
    assert response.status_code == 201, response.text


async def test_duplicate_name_is_409(client):
    assert (await client.post("/items", json={"name": "gadget"})).status_code == 201
    assert (await client.post("/items", json={"name": "gadget"})).status_code == 409


async def test_empty_name_is_422(client):
    assert (await client.post("/items", json={"name": ""})).status_code == 422


async def test_list_starts_empty(client):
    assert (await client.get("/items")).json() == []
