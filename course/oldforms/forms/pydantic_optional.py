"""Probe of pydantic_optional.yml: runs the old form, prints one JSON line."""

from probekit import emit, error

try:
    from pydantic import Optional
except ImportError as exc:
    outcome = error(exc)
else:
    outcome = {"raised": None}
from pydantic import BaseModel
class UserUpdate(BaseModel):
    name: str | None = None
emit(**outcome, today=UserUpdate().model_dump())
