"""Checks for exercise 03: partial updates.

The learner's app runs once, in a subprocess, under a real uvicorn server (driver.py); every row
is read back from the database, with the columns each UPDATE wrote. Each test below reads one
part of what happened and names one expectation.
"""

from __future__ import annotations

import json

from course.grading.checking import answer, expect, nothing_left_running, require

MODULE = "03_partial_updates"
WHAT = "importing app.py and serving it under uvicorn"
DRIVER_TIMEOUT = 45


def row(values: dict | None) -> str:
    return json.dumps(values) if values is not None else "no such row"


def changed(result: dict) -> dict:
    """The fields whose stored value the request changed."""
    before, after = result["before"], result["after"]
    return {k: v for k, v in after.items() if before[k] != v}


def test_app_runs(report: dict) -> None:
    """app.py imports, starts and answers GET /users/1"""
    got = require(report, "get")
    expect(got["status"] == 200 and got["json"] == got["after"], called=got["request"],
           expected=f"200 with the stored user: {row(got['after'])}", got=answer(got),
           hint="keep GET /users/{user_id} as it is; the table is 'users' (id, name, email, city, phone).")


def test_one_field_keeps_the_others(report: dict) -> None:
    """A PATCH with one field changes that field and keeps every other one"""
    for key in ("one_field", "two_fields"):
        r = require(report, key)
        wanted = {**r["before"], **r["sent"]}
        expect(r["status"] == 200 and r["after"] == wanted, called=r["request"],
               expected=f"200, and the row stored as {row(wanted)}",
               got=f"{answer(r)}\nstored before: {row(r['before'])}\nstored after:  {row(r['after'])}",
               hint="model_dump() returns every field of the model, None for the ones the client left out; "
                    "which fields did the client send?", todo=1)


def test_answer_is_the_stored_row(report: dict) -> None:
    """A PATCH answers with the user as stored, every field, not the request body"""
    for key in ("one_field", "two_fields", "clear_phone"):
        r = require(report, key)
        expect(r["status"] == 200 and r["json"] == r["after"], called=r["request"],
               expected=f"200 with the stored user, all five fields: {row(r['after'])}", got=answer(r),
               hint="answer with the row after the commit (keep response_model=UserOut), not with what the "
                    "client sent: the client needs the fields it did not send too.", todo=1)


def test_only_sent_columns_written(report: dict) -> None:
    """An UPDATE writes only the columns the client sent"""
    for key in ("one_field", "two_fields", "clear_phone"):
        r = require(report, key)
        sent = set(r["sent"])
        extra = sorted(set(r["writes"]) - sent)
        expect(not extra, called=r["request"],
               expected=f"the UPDATE names only {sorted(sent)}",
               got=f"it also wrote {extra} (columns written: {r['writes']}); answered {answer(r)}",
               hint="writing back a column the client did not send, even with the value you read, undoes any "
                    "change another request made to it in between. Set only the sent fields (the ORM's UPDATE "
                    "then names only those), or build the SET list from them.", todo=1)


def test_null_clears_a_nullable_field(report: dict) -> None:
    """{"phone": null} clears the phone"""
    r = require(report, "clear_phone")
    wanted = {**r["before"], "phone": None}
    expect(r["status"] == 200 and r["after"] == wanted, called=r["request"],
           expected=f"200, and the row stored as {row(wanted)}",
           got=f"{answer(r)}\nstored after: {row(r['after'])}",
           hint="an explicit null was sent: for a nullable column it means 'clear it'. exclude_none drops it "
                "as if it had not been sent, so a client can never clear a field.", todo=1)


def test_null_for_a_required_field_is_422(report: dict) -> None:
    """A null name or email is a 422 naming the field, and nothing is written"""
    for r, field in zip(require(report, "null_required"), ("email", "name")):
        expect(r["status"] == 422 and field in r["body"] and r["after"] == r["before"], called=r["request"],
               expected=f"422 whose body names '{field}', and the row unchanged: {row(r['before'])}",
               got=f"{answer(r)}\nstored after: {row(r['after'])}",
               hint=f"{field} is NOT NULL: a null is the client's error, not the server's (500) and not something "
                    "to ignore silently (200). Refuse it before writing anything, in the model (a validator sees "
                    "only values that were sent) or in the endpoint.", todo=2)


def test_empty_patch_changes_nothing(report: dict) -> None:
    """An empty PATCH ({}) answers 200 and changes nothing"""
    r = require(report, "empty")
    expect(r["status"] == 200 and r["after"] == r["before"] and not r["writes"], called=r["request"],
           expected=f"200, and the row unchanged: {row(r['before'])}",
           got=f"{answer(r)}\nstored after: {row(r['after'])}; columns written: {r['writes']}",
           hint="nothing was sent, so nothing is written; a field left out keeps its value.", todo=1)


def test_missing_user_is_404(report: dict) -> None:
    """PATCH for a user that does not exist is a 404, not a 500"""
    r = require(report, "missing")
    expect(r["status"] == 404 and r["after"] is None, called=r["request"],
           expected="404 with a detail, and still no user 999",
           got=answer(r) + ("" if r["after"] is None else f"; a row was created: {row(r['after'])}"),
           hint="session.get() returns None for a missing row; raise HTTPException(status_code=404, ...).", todo=3)


def test_wrong_types_are_422(report: dict) -> None:
    """A wrong type or a body that is not an object is a 422 and changes nothing"""
    for r in require(report, "wrong_types"):
        expect(r["status"] == 422 and r["after"] == r["before"], called=r["request"],
               expected=f"422, and the row unchanged: {row(r['before'])}",
               got=f"{answer(r)}\nstored after: {row(r['after'])}",
               hint="take the body as the typed UserPatch model: FastAPI validates it before your code runs. A "
                    "plain dict lets any value through to the database.")


def test_concurrent_patches(report: dict) -> None:
    """Two PATCHes at once to one user both land; a valid PATCH after a refused one succeeds"""
    together = require(report, "together")
    answers, stored = together["answers"], together["row"]
    wanted = {**(answers[0]["sent"]), **(answers[1]["sent"])}
    kept = stored is not None and all(stored[k] == v for k, v in wanted.items())
    expect(all(a["status"] == 200 for a in answers) and kept,
           called=" and ".join(a["request"] for a in answers) + ", sent at the same moment",
           expected=f"200 for both, and both changes stored: {json.dumps(wanted)}",
           got=" / ".join(answer(a) for a in answers) + f"\nstored after: {row(stored)}",
           hint="each PATCH writes only what its client sent; a request that writes back the other fields "
                "as it read them undoes the other request's change.", todo=1)
    refused, valid = require(report, "after_refusal")
    expect(refused["status"] == 422 and valid["status"] == 200 and valid["after"] == {**valid["before"], **valid["sent"]},
           called=f"{refused['request']}, then {valid['request']}",
           expected="422 for the null name, then 200 with the new name stored",
           got=f"{answer(refused)}\nthen {answer(valid)}\nstored after: {row(valid['after'])}",
           hint="a refused request must leave nothing behind (an open transaction, a held lock) that stops the "
                "next valid one.", todo=2)


def test_nothing_left_running(report: dict) -> None:
    """The app stops by itself on SIGTERM, and nothing your code started is left running"""
    nothing_left_running(report)
