"""The challenge's check: the app's lifespan ran once for the whole session (one engine for every test)."""

import pytest

from app import app

engines = []  # the engine each test saw (kept alive, so two different engines never share an id)


@pytest.mark.asyncio
@pytest.mark.parametrize("run", [1, 2, 3])
async def test_the_app_started_once(client, run):
    assert (await client.get("/items")).status_code == 200
    engines.append(app.state.engine)
    assert all(engine is engines[0] for engine in engines), "the lifespan ran again: a new engine"
