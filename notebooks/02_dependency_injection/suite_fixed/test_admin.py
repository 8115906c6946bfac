import pytest


@pytest.mark.asyncio
async def test_admin_sees_reports(client, as_admin):
    response = await client.get("/reports")
    assert response.status_code == 200
    assert response.json()["environment"] == "test"
