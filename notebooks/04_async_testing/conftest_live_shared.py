"""The app under a real uvicorn server, and one HTTP client for the whole session."""

import httpx
import pytest

from course import serve_subprocess  # module 01's helper: `python -m uvicorn` on 127.0.0.1 and a free port


@pytest.fixture(scope="session")
def live_url(tmp_path_factory):
    database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    with serve_subprocess("app:app", app_dir=".", env={"DATABASE_URL": database_url}) as server:
        yield server.url  # the server runs the app's lifespan; it stops at the end of the session


@pytest.fixture(scope="session")
def client(live_url):  # a plain fixture: it runs in no event loop; the client is built once
    return httpx.AsyncClient(base_url=live_url)
