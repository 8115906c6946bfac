"""Probe of pytest_fixture_async.yml: runs the old form, prints one JSON line."""

from probekit import emit, outcome_of, run_pytest

OLD = """
import pytest

@pytest.fixture
async def async_client():
    yield "client"

@pytest.mark.asyncio
async def test_create_user(async_client):
    assert async_client == "client"
"""
TODAY = OLD.replace("import pytest", "import pytest, pytest_asyncio").replace(
    "@pytest.fixture", "@pytest_asyncio.fixture").replace("test_create_user", "test_today")
run = run_pytest({"test_old.py": OLD, "test_today.py": TODAY})
outcome, message = outcome_of(run, "test_create_user")
emit(outcome=outcome, message=message, today=run["test_today"].outcome)
