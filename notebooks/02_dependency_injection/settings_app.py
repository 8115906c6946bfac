"""Settings read on every request vs read once.

``PARSED`` counts how many times a ``Settings`` object was built (the validator below runs
once per parse), so the notebook can count parses instead of guessing.
"""

from collections import Counter
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PARSED: Counter = Counter()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", env_file=".env")
    greeting: str = "hello"
    max_items: int = 10

    @model_validator(mode="after")
    def _count_parse(self) -> "Settings":
        PARSED["settings"] += 1  # instrumentation for the lesson, not something you need
        return self


# --- read on every request ------------------------------------------------------------------

def get_settings_uncached() -> Settings:
    return Settings()  # environment (and .env, if present) read and validated again


uncached_app = FastAPI()


@uncached_app.get("/items")
def items_uncached(settings: Annotated[Settings, Depends(get_settings_uncached)], limit: int = 3) -> dict:
    if limit > settings.max_items:
        raise HTTPException(422, f"limit must be at most {settings.max_items}")
    return {"greeting": settings.greeting, "items": list(range(limit))}


# --- read once, cached; read at startup so a bad value stops the deploy --------------------

@lru_cache
def get_settings() -> Settings:
    return Settings()


@asynccontextmanager
async def lifespan(app: FastAPI):
    get_settings()  # parse now: invalid settings fail the startup, not the first request
    yield


cached_app = FastAPI(lifespan=lifespan)


@cached_app.get("/items")
def items(settings: Annotated[Settings, Depends(get_settings)], limit: int = 3) -> dict:
    if limit > settings.max_items:
        raise HTTPException(422, f"limit must be at most {settings.max_items}")
    return {"greeting": settings.greeting, "items": list(range(limit))}
