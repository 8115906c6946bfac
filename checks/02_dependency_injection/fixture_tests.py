"""Course tests that run next to the learner's app.py and conftest.py (the fixture ``fake_upstream``).

The grader's pytest plugin (plugins/course02_probe.py) records every httpx client built in the
run. driver.py copies this file twice into a scratch folder (``test_course_fixture.py`` and
``test_course_fixture_reversed.py``) with the learner's two files, and runs it under one real
pytest (course.pytest_runner): the tests of the first copy in one order, those of the second in
the reverse order. Each test checks one promise of the fixture; each check reads one test's outcome:

    test_fake_upstream_answers             the app's own GET /prices/ACME is answered by the fake
    test_fake_client_closed                the fake client is closed once the test is over
    test_fake_upstream_serves_several_requests   one test, four requests, one failing: all answered
    test_fake_client_closed_after_failed_request   closed also when the request's endpoint raised
    test_no_override_left_behind           no override is left once a fake_upstream test is over
    test_other_overrides_survive           another fixture's override outlives fake_upstream

The two probe routes below take their client from ``Depends(get_client)`` themselves, so the tests
that use them depend on the fixture only, not on how the learner's endpoints are wired.
"""

import traceback
from pathlib import Path

import httpx
import pytest
from course02_probe import CLIENTS  # every httpx client built in this run, with the learner's line
from fastapi import Depends, HTTPException

from app import app, get_client, get_settings

HERE = Path(__file__).resolve().parent
QUOTE = "/__course/quote/{symbol}"
FAILING = "/__course/fails-after-upstream"
FAKE_PRICE = 42.0


async def _quote(symbol: str, client: httpx.AsyncClient = Depends(get_client)) -> dict:
    """What get_price does, with the client from get_client (the fixture's override in these tests)."""
    return (await client.get(f"/prices/{symbol}")).json()


async def _fails_after_upstream(client: httpx.AsyncClient = Depends(get_client)) -> dict:
    """A request that uses the client, then fails, as an order does when pricing fails: FastAPI
    throws the exception into the override at its ``yield``."""
    await client.get("/prices/ACME")
    raise HTTPException(502, "the course's failing request")


if not any(getattr(route, "path", None) == QUOTE for route in app.routes):  # once for both copies
    app.add_api_route(QUOTE, _quote, methods=["GET"])
    app.add_api_route(FAILING, _fails_after_upstream, methods=["GET"])


def gateway() -> httpx.AsyncClient:
    """A client for the app itself, in process (no lifespan runs: only an override provides a client)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


def _where(exc: BaseException) -> str:
    """`` (conftest.py line 12: code)``: the learner's last line in the traceback, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve().parent == HERE and not Path(f.filename).name.startswith("test_course_")]
    if not frames:
        return ""
    f = frames[-1]
    return f" ({Path(f.filename).name} line {f.lineno}" + (f": {f.line.strip()}" if f.line else "") + ")"


async def ask(client: httpx.AsyncClient, path: str) -> tuple[int | None, str]:
    """``GET path``: (status, "answered 200 {...}"), or (None, the exception the app raised, with
    the learner's line)."""
    try:
        response = await client.get(path)
    except Exception as exc:  # noqa: BLE001 - the app's exception is this request's answer
        text = str(exc).strip().splitlines()
        return None, f"raised {type(exc).__name__}" + (f": {text[0][:200]}" if text else "") + _where(exc)
    return response.status_code, f"answered {response.status_code} {response.text[:200]}"


def _names(overrides: dict) -> list[str]:
    return sorted(getattr(dep, "__name__", repr(dep)) for dep in overrides)


@pytest.fixture
def clients_closed_afterwards(request):
    """Set up before fake_upstream, torn down after it: were the clients it built closed?"""
    start = len(CLIENTS)
    yield
    fakes = [c for c, where in CLIENTS[start:] if where]  # built by the learner's code, not by these tests
    still_open = [c for c in fakes if not c.is_closed]
    after = " (its one request failed inside the endpoint)" if "failed_request" in request.node.name else ""
    assert not still_open, (
        f"{len(still_open)} of the {len(fakes)} httpx.AsyncClient(s) created by fake_upstream "
        f"were still open after the test{after}"
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
async def test_fake_upstream_answers(fake_upstream):
    assert get_client in app.dependency_overrides, (
        f"get_client is not in app.dependency_overrides during the test (overrides: {_names(app.dependency_overrides)})"
    )
    async with gateway() as client:
        status, answer = await ask(client, "/prices/ACME")
    assert status == 200 and f'"price":{FAKE_PRICE}' in answer.replace(" ", ""), f"GET /prices/ACME {answer}"


@pytest.mark.asyncio
async def test_fake_client_closed(clients_closed_afterwards, fake_upstream):
    async with gateway() as client:
        await ask(client, QUOTE.format(symbol="ACME"))  # the closing is checked at teardown


@pytest.mark.asyncio
async def test_fake_upstream_serves_several_requests(fake_upstream):
    plan = [(QUOTE.format(symbol="ACME"), 200), (FAILING, 502), (QUOTE.format(symbol="BETA"), 200),
            (QUOTE.format(symbol="ACME"), 200)]
    answers = []
    async with gateway() as client:
        for path, _ in plan:
            answers.append(await ask(client, path))
    wrong = [i for i, ((_, wanted), (status, text)) in enumerate(zip(plan, answers))
             if status != wanted or (wanted == 200 and f"{FAKE_PRICE}" not in text)]
    assert not wrong, (
        f"request {wrong[0] + 1} of {len(plan)}, GET {plan[wrong[0]][0]}, {answers[wrong[0]][1]}; "
        f"the four in order: {', '.join(str(status or 'raised') for status, _ in answers)} "
        f"(expected {', '.join(str(wanted) for _, wanted in plan)})"
    )


@pytest.mark.asyncio
async def test_fake_client_closed_after_failed_request(clients_closed_afterwards, fake_upstream):
    async with gateway() as client:
        await ask(client, FAILING)  # the closing is checked at teardown


def test_no_override_left_behind():
    assert not app.dependency_overrides, f"overrides still set: {_names(app.dependency_overrides)}"


@pytest.mark.asyncio
async def test_other_overrides_survive(settings_override_from_another_fixture, fake_upstream):
    assert get_settings in app.dependency_overrides  # checked again after fake_upstream's teardown
