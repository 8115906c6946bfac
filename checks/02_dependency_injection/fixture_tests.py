"""Course tests that run together with the learner's conftest.py (fixture ``fake_upstream``).

The driver copies this file next to the learner's app.py and conftest.py as
``test_course_fixture.py`` and runs pytest on it twice, in two orders. Each test checks one
promise of the fixture; the driver reads the outcomes from a JUnit XML report.
"""

import httpx
import pytest

from app import app, get_client, get_settings

# Every httpx.AsyncClient created from now on, so a test can tell whether the fake was closed.
CREATED: list[httpx.AsyncClient] = []
_original_init = httpx.AsyncClient.__init__


def _tracking_init(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    CREATED.append(self)


httpx.AsyncClient.__init__ = _tracking_init


async def get_price(symbol: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # no lifespan: only an override can provide a client
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        client._course_own = True
        return await client.get(f"/prices/{symbol}")


def _names(overrides: dict) -> list[str]:
    return sorted(getattr(dep, "__name__", repr(dep)) for dep in overrides)


@pytest.fixture
def clients_closed_afterwards():
    """Set up before fake_upstream, torn down after it: were its clients closed?"""
    start = len(CREATED)
    yield
    fakes = [c for c in CREATED[start:] if not getattr(c, "_course_own", False)]
    still_open = [c for c in fakes if not c.is_closed]
    assert not still_open, (
        f"{len(still_open)} of the {len(fakes)} httpx.AsyncClient(s) created by fake_upstream "
        "were still open after the test"
    )


@pytest.fixture
def settings_override_from_another_fixture():
    """Another fixture's override, set before fake_upstream and checked after it is gone."""

    def other_settings():
        return get_settings()

    app.dependency_overrides[get_settings] = other_settings
    yield
    survived = app.dependency_overrides.get(get_settings) is other_settings
    app.dependency_overrides.pop(get_settings, None)
    assert survived, (
        "the get_settings override set by another fixture was gone after fake_upstream's teardown; "
        f"overrides left: {_names(app.dependency_overrides)}"
    )


@pytest.mark.asyncio
async def test_fake_upstream_answers(clients_closed_afterwards, fake_upstream):
    assert get_client in app.dependency_overrides, (
        f"get_client is not in app.dependency_overrides during the test (overrides: {_names(app.dependency_overrides)})"
    )
    response = await get_price("ACME")
    assert response.status_code == 200, f"GET /prices/ACME answered {response.status_code}: {response.text[:200]}"
    assert response.json().get("price") == 42.0, f"GET /prices/ACME answered {response.json()}"


def test_no_override_left_behind():
    assert not app.dependency_overrides, f"overrides still set: {_names(app.dependency_overrides)}"


@pytest.mark.asyncio
async def test_other_overrides_survive(settings_override_from_another_fixture, fake_upstream):
    assert get_settings in app.dependency_overrides  # checked again after fake_upstream's teardown
