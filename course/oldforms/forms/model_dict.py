"""Probe of model_dict.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit, printed_by_default, run_pytest, warnings_of

from pydantic import BaseModel
class UserUpdate(BaseModel):
    name: str | None = None
    email: str | None = None
update = UserUpdate(name="Alice")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = update.dict(exclude_unset=True)
    today = update.model_dump(exclude_unset=True)
(w,) = caught
printed = printed_by_default("update.dict(exclude_unset=True)", update=update)
run = run_pytest({"test_dict.py": (
    "from pydantic import BaseModel\n"
    "class UserUpdate(BaseModel):\n    name: str | None = None\n"
    "def test_dict():\n    assert UserUpdate(name='A').dict(exclude_unset=True) == {'name': 'A'}\n")})
emit(warning=w.category.__name__, message=str(w.message),
     deprecation=issubclass(w.category, DeprecationWarning), result=result,
     printed_by_default=[x.category.__name__ for x in printed],
     under_pytest=[run["test_dict"].outcome, warnings_of(run)], today=today)
