"""Tests for the bookmarks API. They use two fixtures from conftest.py:

    client   an httpx.AsyncClient wired to the app, with the app's lifespan entered
    session  an AsyncSession in the same per-test transaction as the app's requests

Every test starts from an empty database, whatever ran before it.
"""

import pytest
from sqlalchemy import func, select

from app import Bookmark

pytestmark = pytest.mark.asyncio


async def test_health(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_starts_empty(client):
    response = await client.get("/bookmarks")
    assert response.status_code == 200
    assert response.json() == []


async def test_create_and_read(client):
    created = await client.post("/bookmarks", json={"url": "https://example.com/a", "title": "A"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["url"] == "https://example.com/a"
    fetched = await client.get(f"/bookmarks/{body['id']}")
    assert fetched.json() == body


async def test_duplicate_url_is_409_and_keeps_the_first(client):
    first = await client.post("/bookmarks", json={"url": "https://example.com/dup", "title": "first"})
    assert first.status_code == 201
    second = await client.post("/bookmarks", json={"url": "https://example.com/dup", "title": "second"})
    assert second.status_code == 409
    # The failed request rolled back its own work only; the first bookmark is still there.
    listed = await client.get("/bookmarks")
    assert [b["title"] for b in listed.json()] == ["first"]


@pytest.mark.parametrize("payload", [
    {"url": "not a url", "title": "x"},
    {"url": "https://example.com/b", "title": ""},
    {"title": "no url"},
])
async def test_bad_input_is_422(client, payload):
    response = await client.post("/bookmarks", json=payload)
    assert response.status_code == 422


async def test_missing_is_404(client):
    assert (await client.get("/bookmarks/999")).status_code == 404
    assert (await client.delete("/bookmarks/999")).status_code == 404


async def test_delete(client):
    created = (await client.post("/bookmarks", json={"url": "https://example.com/d", "title": "D"})).json()
    assert (await client.delete(f"/bookmarks/{created['id']}")).status_code == 204
    assert (await client.get("/bookmarks")).json() == []


async def test_session_sees_what_a_request_wrote(client, session):
    await client.post("/bookmarks", json={"url": "https://example.com/s", "title": "S"})
    assert await session.scalar(select(func.count()).select_from(Bookmark)) == 1


async def test_request_sees_what_the_session_wrote(client, session):
    session.add(Bookmark(url="https://example.com/t", title="T"))
    await session.commit()
    listed = await client.get("/bookmarks")
    assert [b["url"] for b in listed.json()] == ["https://example.com/t"]
