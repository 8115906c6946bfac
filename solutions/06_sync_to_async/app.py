"""Profiles API: GET /users/{user_id} returns a user's name and their score from a scoring service.

Reference answer for exercise 06 (sync to async).
"""

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import FastAPI, HTTPException, Path, Request
from pydantic import BaseModel
from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ATTEMPTS = 3  # calls to the scoring service per request, at most


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class Profile(BaseModel):
    id: int
    name: str
    score: int


# Positive, and fits SQLite's 8-byte INTEGER: anything else is bad input (a 422).
UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Settings are read when the server starts.
    app.state.scores_url = os.environ.get("SCORES_URL", "http://127.0.0.1:8001")
    app.state.retry_delay = float(os.environ.get("RETRY_DELAY", "0.1"))
    engine = create_async_engine(f"sqlite+aiosqlite:///{os.environ.get('DATABASE_PATH', 'users.db')}")
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        # One client for the app's lifetime: its pool keeps connections open between requests.
        async with httpx.AsyncClient(base_url=app.state.scores_url, timeout=5) as client:
            app.state.client = client
            yield
    finally:
        await engine.dispose()


app = FastAPI(title="Profiles", lifespan=lifespan)


async def fetch_score(client: httpx.AsyncClient, user_id: int, retry_delay: float) -> int:
    """The user's score. The service sometimes answers 503 (busy): wait, then try again."""
    for attempt in range(1, ATTEMPTS + 1):
        response = await client.get(f"/scores/{user_id}")
        if response.status_code != 503:
            break
        if attempt < ATTEMPTS:
            await asyncio.sleep(retry_delay * attempt)  # other requests run meanwhile
    if response.status_code != 200:
        raise HTTPException(502, f"the scoring service answered {response.status_code}")
    return response.json()["score"]


# The return annotation is the response model: `response_model=Profile` repeated it (FAST001).
@app.get("/users/{user_id}")
async def read_profile(user_id: UserId, request: Request) -> Profile:
    async with request.app.state.sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise HTTPException(404, f"no user {user_id}")
        name = user.name
    score = await fetch_score(request.app.state.client, user_id, request.app.state.retry_delay)
    return Profile(id=user_id, name=name, score=score)
