"""Probe of validator.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit, printed_by_default, run_pytest, warnings_of

SOURCE = """
from pydantic import BaseModel, Field, validator
class CreditCard(BaseModel):
    number: str = Field(..., min_length=13, max_length=19)
    @validator('number')
    def luhn_check(cls, v):
        if not v.isdigit():
            raise ValueError('Invalid card number')
        return v
"""
import textwrap
SOURCE = textwrap.dedent(SOURCE)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    namespace = {"__name__": "__main__"}
    exec(SOURCE, namespace)
(w,) = caught
from pydantic import ValidationError
try:
    namespace["CreditCard"](number="4111-1111-1111")
    still_validates = False
except ValidationError as exc:
    still_validates = "Invalid card number" in str(exc)
from pydantic import BaseModel, Field, field_validator
with warnings.catch_warnings(record=True) as today_warnings:
    warnings.simplefilter("always")
    class Card(BaseModel):
        number: str = Field(min_length=13, max_length=19)
        @field_validator("number")
        @classmethod
        def luhn_check(cls, v: str) -> str:
            if not v.isdigit():
                raise ValueError("Invalid card number")
            return v
try:
    Card(number="4111-1111-1111")
    today = "accepted"
except ValidationError as exc:
    today = "rejected" if "Invalid card number" in str(exc) else str(exc)
TEST = "\ndef test_card():\n    assert CreditCard(number='4111111111111111')\n"
run = run_pytest({"test_card.py": SOURCE + TEST})
printed = printed_by_default(SOURCE)
emit(warning=w.category.__name__, message=str(w.message), still_validates=still_validates,
     under_pytest=[run["test_card"].outcome, warnings_of(run)],
     printed_by_default=[x.category.__name__ for x in printed], today=today, today_warnings=len(today_warnings))
