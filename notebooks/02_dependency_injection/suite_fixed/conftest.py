import httpx
import pytest
import pytest_asyncio

from auth_app import Settings, User, app, get_current_user, get_settings


@pytest.fixture(scope="session", autouse=True)
def test_settings():
    """Every test runs against test settings (another team's fixture, say)."""
    app.dependency_overrides[get_settings] = lambda: Settings(environment="test")
    yield
    app.dependency_overrides.pop(get_settings, None)


@pytest.fixture
def as_admin():
    """Log in as an admin for one test, then remove exactly this override."""
    app.dependency_overrides[get_current_user] = lambda: User(name="root", is_admin=True)
    yield
    app.dependency_overrides.pop(get_current_user)


@pytest_asyncio.fixture
async def client():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
