"""Probe of orm_mode.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit, error

from types import SimpleNamespace
from pydantic import BaseModel, ConfigDict, ValidationError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    class UserOut(BaseModel):
        name: str
        class Config:
            orm_mode = True
user = SimpleNamespace(name="Ada")
try:
    UserOut.from_orm(user)
except Exception as exc:
    outcome = error(exc)
else:
    outcome = {"raised": None}
try:
    UserOut.model_validate(user)
except ValidationError as exc:
    outcome["model_validate"] = exc.errors()[0]["type"]
class Today(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
emit(**outcome, warnings=sorted({w.category.__name__ for w in caught}),
     renamed=any("'orm_mode' has been renamed to 'from_attributes'" in str(w.message) for w in caught),
     today=Today.model_validate(user).name)
