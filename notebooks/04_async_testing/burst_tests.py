"""The same 30 requests, one at a time and all at once; each test twice."""

import asyncio

import pytest

pytestmark = pytest.mark.asyncio
N = 30  # more than the pool's 5 connections + 10 overflow, so some requests wait for one


@pytest.mark.parametrize("run", [1, 2])
async def test_one_at_a_time(client, run):
    for _ in range(N):
        assert (await client.get("/items")).status_code == 200


@pytest.mark.parametrize("run", [1, 2])
async def test_all_at_once(client, run):
    responses = await asyncio.gather(*(client.get("/items") for _ in range(N)))
    assert [r.status_code for r in responses] == [200] * N
