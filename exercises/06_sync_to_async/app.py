"""Profiles API: GET /users/{user_id} returns a user's name and their score from a scoring service.

Exercise 06 (sync to async). This was a sync module, made "async" by writing `async def`: every
call inside still blocks the event loop, so concurrent requests wait for each other. Read
README.md, fix the four TODOs, then run `course check 06`.
"""

import os
import time
from contextlib import asynccontextmanager
from typing import Annotated

import requests
from fastapi import FastAPI, HTTPException, Path, Request
from pydantic import BaseModel
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

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
    # TODO 1: a sync engine and sync sessions: every query blocks the event loop. Create an async
    # engine (sqlite+aiosqlite) and an async sessionmaker instead, and one HTTP client for the
    # scoring service that every request shares; close both when the server stops.
    engine = create_engine(f"sqlite:///{os.environ.get('DATABASE_PATH', 'users.db')}")
    app.state.sessions = sessionmaker(engine)
    try:
        yield
    finally:
        engine.dispose()


app = FastAPI(title="Profiles", lifespan=lifespan)


def fetch_score(scores_url: str, user_id: int, retry_delay: float) -> int:
    """The user's score. The service sometimes answers 503 (busy): wait, then try again."""
    for attempt in range(1, ATTEMPTS + 1):
        # TODO 3: requests blocks the event loop while it waits for the answer. Use the shared
        # async client from the lifespan (and make this function a coroutine).
        response = requests.get(f"{scores_url}/scores/{user_id}", timeout=5)
        if response.status_code != 503:
            break
        if attempt < ATTEMPTS:
            # TODO 4: time.sleep blocks the event loop for the whole wait. Wait without blocking.
            time.sleep(retry_delay * attempt)
    if response.status_code != 200:
        raise HTTPException(502, f"the scoring service answered {response.status_code}")
    return response.json()["score"]


# The return annotation is the response model: `response_model=Profile` repeated it (FAST001).
@app.get("/users/{user_id}")
async def read_profile(user_id: UserId, request: Request) -> Profile:
    # TODO 2: a sync session: the query blocks the event loop. Use an async session, and keep
    # it only for the query (it is closed before the call to the scoring service).
    with request.app.state.sessions() as session:
        user = session.get(User, user_id)
        if user is None:
            raise HTTPException(404, f"no user {user_id}")
        name = user.name
    score = fetch_score(request.app.state.scores_url, user_id, request.app.state.retry_delay)
    return Profile(id=user_id, name=name, score=score)
