"""Probe of pydantic_basesettings.yml: runs the old form, prints one JSON line."""

import os

from probekit import emit, error

try:
    from pydantic import BaseSettings
    outcome = {"raised": None}
except ImportError as exc:
    outcome = error(exc)
    outcome["import_error"] = isinstance(exc, ImportError)
os.environ["REDIS_HOST"] = "cache.internal"
from pydantic_settings import BaseSettings
class Settings(BaseSettings):
    redis_host: str = "localhost"
emit(**outcome, today=Settings().redis_host)
