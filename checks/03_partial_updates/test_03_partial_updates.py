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
    """A wrong type (NaN and Infinity included) is a 422 and changes nothing"""
    for r in require(report, "wrong_types"):
        expect(r["status"] == 422 and r["after"] == r["before"], called=r["request"],
               expected=f"422, and the row unchanged: {row(r['before'])}",
               got=f"{answer(r)}\nstored after: {row(r['after'])}",
               hint="take the body as the typed UserPatch model: FastAPI validates it before your code runs. A "
                    "plain dict lets any value through to the database. A 500 for NaN: keep the given 422 "
                    "handler, FastAPI's own echoes the value and JSON cannot carry NaN.", todo=2)


def test_unknown_field_is_422(report: dict) -> None:
    """A field the API does not have is a 422, not silently ignored"""
    r = require(report, "unknown_field")
    expect(r["status"] == 422 and "nmae" in r["body"] and r["after"] == r["before"], called=r["request"],
           expected=f"422 whose body names 'nmae', and the row unchanged: {row(r['before'])}",
           got=f"{answer(r)}\nstored after: {row(r['after'])}",
           hint="a misspelt field answered 200 tells the client its change worked while nothing changed. A "
                "Pydantic model ignores unknown fields unless its config forbids them.", todo=2)


def test_not_an_object_is_422(report: dict) -> None:
    """A body that is not a JSON object (a list, a string, a number, true, null, nothing) is a 422"""
    for r in require(report, "not_objects"):
        expect(r["status"] == 422 and r["after"] == r["before"], called=r["request"] + "  (raw body)",
               expected=f"422, and the row unchanged: {row(r['before'])}",
               got=f"{answer(r)}\nstored after: {row(r['after'])}",
               hint="the body must be a UserPatch, required: a body you made optional (`= None`) turns `null` or "
                    "an empty body into None, and your code then fails on it (a 500).")


def test_ids_out_of_range_are_4xx(report: dict) -> None:
    """An id that is not a positive 64-bit integer is a 4xx on GET and PATCH, never a 500"""
    for r in require(report, "ids"):
        expect(r["status"] is not None and 400 <= r["status"] < 500 and not r["server_error"], called=r["request"],
               expected="a 4xx (422: not a valid id, or 404: no such user)", got=answer(r),
               hint="SQLite's INTEGER holds 8 bytes: a larger id makes the driver raise OverflowError. Bound the "
                    "path parameter (keep UserId on every route that takes an id).")


def _is_strong_etag(value: str | None) -> bool:
    return bool(value) and len(value) >= 2 and value[0] == value[-1] == '"' and '"' not in value[1:-1]


def _etag(r: dict) -> str | None:
    return (r.get("headers") or {}).get("etag")


def test_schema_tells_the_truth(report: dict) -> None:
    """The OpenAPI schema says name and email may be left out but not null; city and phone may be null"""
    schema = require(report, "schema")
    fields = schema["fields"]
    for field in ("name", "email", "city", "phone"):
        f = fields.get(field) or {}
        nullable = field in ("city", "phone")
        ok = f.get("listed") and not f.get("required") and f.get("nullable") == nullable
        expect(bool(ok), called=f"GET /openapi.json: {schema['found']}, field '{field}'",
               expected=f"'{field}' listed, not required, and null " + ("allowed" if nullable else "not allowed"),
               got="no such field" if not f.get("listed") else
                   f"{'required' if f.get('required') else 'not required'}, null "
                   f"{'allowed' if f.get('nullable') else 'not allowed'}: {json.dumps(f.get('schema'))}",
               hint="clients are generated from this schema: `str | None = None` plus a validator refuses null "
                    "but tells every client that null is fine. Say 'may be left out, never null' in the type: "
                    "Pydantic's MISSING sentinel (`str | MISSING = MISSING`) leaves null out of the schema.",
               todo=2)


def test_etag_on_every_answer(report: dict) -> None:
    """GET and PATCH answer with a strong ETag for the user as stored, which changes when the user changes"""
    etags = require(report, "etags")
    for key, r in (("read", etags["read"]), ("fresh", etags["fresh"]), ("reread", etags["reread"]),
                   ("other", etags["other"])):
        expect(r["status"] == 200 and _is_strong_etag(_etag(r)), called=r["request"],
               expected='200 with an ETag header holding a quoted string, e.g. ETag: "3"',
               got=f"{answer(r)}; ETag: {_etag(r)!r}",
               hint="set it on the response (a `response: Response` parameter, then response.headers['ETag']); a "
                    "strong entity tag is quoted, W/ marks a weak one, which If-Match never matches.", todo=4)
    read, fresh, reread, other = (_etag(etags[k]) for k in ("read", "fresh", "reread", "other"))
    expect(fresh != read and other != fresh,
           called=f"{etags['fresh']['request']}, then {etags['other']['request']} (no If-Match)",
           expected="a new ETag after each change (whoever made it, with or without If-Match)",
           got=f"ETag before: {read}, after the first PATCH: {fresh}, after the second: {other}",
           hint="the ETag names a version of the user: every write must give it a new one (a version column "
                "bumped by every UPDATE, or a hash of the stored row).", todo=4)
    expect(reread == fresh,
           called=f"{etags['reread']['request']}, after {etags['fresh']['request']}",
           expected=f"GET gives the ETag the PATCH answered with ({fresh})", got=f"GET gave {reread}",
           hint="the PATCH's ETag must name the row as stored after its commit, the same one a GET computes.",
           todo=4)


def test_stale_patch_is_412(report: dict) -> None:
    """A PATCH whose If-Match is no longer current is a 412 and writes nothing"""
    etags = require(report, "etags")
    for r in (etags["stale"], etags["stale_empty"], etags["stale_after_other"]):
        expect(r["status"] == 412 and r["after"] == r["before"] and not r["writes"],
               called=r["request"] + "  (If-Match: an ETag from before "
                                     f"{'the last' if r is etags['stale_after_other'] else 'the first'} change)",
               expected=f"412 Precondition Failed, and the row unchanged: {row(r['before'])}",
               got=f"{answer(r)}\nstored after: {row(r['after'])}; columns written: {r['writes']}",
               hint="the client edited a copy the server no longer holds: compare If-Match with the user's current "
                    "ETag before writing, and refuse with 412 when they differ.", todo=4)


def test_same_etag_at_once_one_wins(report: dict) -> None:
    """Six PATCHes sent at once with the same ETag: exactly one is applied, the others get 412"""
    race = require(report, "race")
    answers, stored = race["answers"], race["row"]
    won = [a for a in answers if a["status"] == 200]
    others = sorted(a["status"] for a in answers if a["status"] != 200)
    winner_city = won[0]["sent"]["city"] if len(won) == 1 else None
    expect(len(won) == 1 and set(others) == {412} and stored is not None and stored["city"] == winner_city
           and race["writes"] == ["city"],
           called=f"six PATCH /users/8 {{\"city\": \"City <i>\"}} with If-Match: {_etag(race['read'])}, sent at once",
           expected="exactly one 200, five 412, and the winner's city stored (one UPDATE)",
           got=f"{len(won)} x 200, then {others}; stored city {stored and stored['city']!r}; columns the UPDATEs "
               f"wrote: {race['writes']}"
               + "".join(f"\n  {answer(a)}" for a in answers if a["status"] not in (200, 412)),
           hint="comparing If-Match in Python, then writing, lets every request that read before the first write "
                "through: the check and the write must be one step. Put the version in the UPDATE's WHERE and "
                "count the rows it changed (0: someone else won, 412).", todo=4)
    nxt = race["next"]
    expect(nxt["status"] == 200 and nxt["after"]["phone"] == nxt["sent"]["phone"],
           called=f"{nxt['request']} with the ETag a GET gave after the race",
           expected="200, and the new phone stored",
           got=f"{answer(nxt)}\nstored after: {row(nxt['after'])}",
           hint="after a refusal, the current ETag must still work: nothing held, nothing left half-written.",
           todo=4)


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
