import pytest

from auth_app import User, app, get_current_user


@pytest.mark.asyncio
async def test_admin_sees_reports(client):
    # Log in as an admin by overriding the dependency... and never put it back.
    app.dependency_overrides[get_current_user] = lambda: User(name="root", is_admin=True)
    response = await client.get("/reports")
    assert response.status_code == 200
