"""Starlette's TestClient (FastAPI re-exports it): sync tests, with and without a `with` block."""

import pytest
from fastapi.testclient import TestClient

from app import app


@pytest.fixture(autouse=True)
def database(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")


def test_client_without_with():
    client = TestClient(app)
    assert client.get("/items").json() == []


def test_client_in_a_with_block():
    with TestClient(app) as client:  # __enter__ runs the lifespan's startup, __exit__ its shutdown
        assert client.get("/items").json() == []
