"""Probe of event_loop_fixture.yml: runs the old form, prints one JSON line."""

from probekit import emit, outcome_of, run_pytest, warnings_of

OVERRIDE = """
import asyncio
import pytest

@pytest.fixture(scope="session")
def event_loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()

LOOPS = []

@pytest.mark.asyncio
async def test_first():
    LOOPS.append(asyncio.get_running_loop())

@pytest.mark.asyncio
async def test_second():
    LOOPS.append(asyncio.get_running_loop())
    assert LOOPS[0] is LOOPS[1], "each test got its own loop"
"""
REQUEST = """
import pytest

@pytest.mark.asyncio
async def test_requests_event_loop(event_loop):
    pass
"""
TODAY = """
import asyncio
import pytest

LOOPS = []

@pytest.mark.asyncio(loop_scope="session")
async def test_today_first():
    LOOPS.append(asyncio.get_running_loop())

@pytest.mark.asyncio(loop_scope="session")
async def test_today_second():
    LOOPS.append(asyncio.get_running_loop())
    assert LOOPS[0] is LOOPS[1]
"""
run = run_pytest({"test_override.py": OVERRIDE, "test_request.py": REQUEST, "test_today.py": TODAY})
outcome, message = outcome_of(run, "test_requests_event_loop")
second, second_message = outcome_of(run, "test_second")
emit(outcome=outcome, message=message, override_second_test=second,
     override_says="each test got its own loop" in second_message,
     warnings=warnings_of(run), today=run["test_today_second"].outcome)
