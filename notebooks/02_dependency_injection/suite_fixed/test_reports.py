import pytest


@pytest.mark.asyncio
async def test_reports_need_a_token(client):
    response = await client.get("/reports")  # no X-Token header
    assert response.status_code == 401


@pytest.mark.asyncio
async def test_reports_list_quarters(client, as_admin):
    response = await client.get("/reports")
    assert response.status_code == 200
    assert response.json() == {"reports": ["Q1", "Q2"], "environment": "test"}
