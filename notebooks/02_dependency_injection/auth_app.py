"""A small app with authentication and settings, both dependencies: the target of the test
suites in ``suite_leaky/`` and ``suite_fixed/``."""

from functools import lru_cache
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTS_")
    environment: str = "production"


@lru_cache
def get_settings() -> Settings:
    return Settings()


class User(BaseModel):
    name: str
    is_admin: bool = False


TOKENS = {"alice-token": User(name="alice", is_admin=True), "bob-token": User(name="bob")}


def get_current_user(x_token: Annotated[str | None, Header()] = None) -> User:
    if x_token not in TOKENS:
        raise HTTPException(401, "missing or unknown X-Token header")
    return TOKENS[x_token]


app = FastAPI()


@app.get("/reports")
def reports(user: Annotated[User, Depends(get_current_user)],
            settings: Annotated[Settings, Depends(get_settings)]) -> dict:
    if not user.is_admin:
        raise HTTPException(403, "admins only")
    return {"reports": ["Q1", "Q2"], "environment": settings.environment}
