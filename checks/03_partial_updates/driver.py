"""Runs a learner's module-03 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It creates a SQLite file with eight users (name and email NOT NULL, city and phone nullable, a
version column) and a trigger per column that records every column an UPDATE names
(course.partial), imports app.py twice and serves each with uvicorn on 127.0.0.1 (two workers, as
`uvicorn --workers 2` runs them), reads its OpenAPI schema,
sends PATCH requests with partial bodies, explicit nulls, wrong types, bodies that are not objects,
ids out of range and an unknown id, PATCHes from a stale ETag and six at once with one ETag, and
reads each row back from the database before and after. It never judges: the checks read the report.

Every request's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error", "headers") plus "sent" (the JSON
body sent, or the raw text of one that is not JSON), "before"/"after" (the row read straight from
the database; None: no such row) and "writes" (the columns the app's UPDATEs named during the
request, in order).

Report keys (each check names the ones it needs with ``require``):

    get            GET /users/1
    schema         the PATCH body's schema in GET /openapi.json: {"found" (where it was looked for, and why
                   not), "fields": {field: {"listed", "required", "nullable", "schema"}}}
    one_field      PATCH /users/1 {"city": "Lyon"}
    two_fields     PATCH /users/1 {"name": "Ada King", "phone": "+44 20 7946 0999"} (after one_field)
    clear_phone    PATCH /users/2 {"phone": null}
    null_required  [PATCH /users/3 {"email": null}, PATCH /users/3 {"name": null, "city": "Paris"}]
    empty          PATCH /users/4 {}
    missing        PATCH /users/999 {"city": "Lyon"}
    wrong_types    PATCH /users/5 with {"city": 42}, {"name": ["Ada"]}, {"phone": {"number": "1"}},
                   {"city": NaN}, {"name": Infinity}
    unknown_field  PATCH /users/5 {"nmae": "Barbara"}
    not_objects    PATCH /users/5 with bodies that are not a JSON object: [], ["city"], "Lyon", 42, true, null,
                   an empty body, and text that is not JSON
    ids            GET and PATCH {"city": "Lyon"} for ids that are not positive 64-bit integers: 0, -1,
                   2**63, 2**64, 10**30
    together       [PATCH /users/6 {"city": "Oslo"}, PATCH /users/6 {"phone": "+47 2200 0000"}] sent at once, one
                   to each worker, through the write gate (course.grading.writegate: both read before either
                   writes), plus "row": user 6 as stored afterwards and "gate": what the gate saw
    after_refusal  [PATCH /users/6 {"name": null}, PATCH /users/6 {"name": "Don Knuth"}], one after the other
    etags          user 7, one after the other: "read" (GET), "fresh" (PATCH {"city": "Boston"} with If-Match:
                   read's ETag), "reread" (GET), "stale" (PATCH {"city": "Houston"} with read's ETag again),
                   "stale_empty" (PATCH {} with read's ETag), "other" (PATCH {"phone": "+1 617 555 0199"}, no
                   If-Match: another client), "stale_after_other" (PATCH {"name": "Margaret H."} with fresh's ETag)
    race           user 8: "read" (GET), "answers" (six PATCHes {"city": "City <i>"} with If-Match: read's ETag,
                   sent at once, alternately to each worker, through the write gate), "gate" (what it saw),
                   "row" (stored afterwards), "writes" (the columns the six UPDATEs named), "reread" (GET
                   afterwards), "next" (PATCH {"phone": "+1 908 555 0100"} with If-Match: reread's ETag)
    stops          the serving stage's stop (SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from course.grading.checking import Driver

NOT_SENT = object()
PATCH_PATH = "/users/{user_id}"
FIELDS = ("name", "email", "city", "phone")
NOT_OBJECTS = [b"[]", b'["city"]', b'"Lyon"', b"42", b"true", b"null", b"", b'{"city": "Lyon"']
BAD_IDS = ["0", "-1", str(2**63), str(2**64), str(10**30)]


def _resolve(schema: Any, doc: dict) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 20:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema, seen = doc.get("components", {}).get("schemas", {}).get(name, {}), seen + 1
    return schema


def allows_null(schema: Any, doc: dict) -> bool:
    """Whether a JSON value null validates against ``schema`` (JSON Schema as OpenAPI 3.1 uses it, and
    3.0's ``nullable``)."""
    s = _resolve(schema, doc)
    if not isinstance(s, dict):
        return bool(s) if isinstance(s, bool) else True
    if s.get("nullable") is True:
        return True
    if "const" in s:
        return s["const"] is None
    if "enum" in s:
        return None in s["enum"]
    if "anyOf" in s or "oneOf" in s:
        return any(allows_null(x, doc) for x in s.get("anyOf", []) + s.get("oneOf", []))
    if "allOf" in s:
        return all(allows_null(x, doc) for x in s["allOf"])
    kind = s.get("type")
    if kind is None:
        return True  # no type: any value
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


def patch_body_schema(doc: Any) -> dict:
    """The four fields as the PATCH operation's JSON body schema describes them."""
    import re

    paths = doc.get("paths") if isinstance(doc, dict) else None
    path = next((p for p, ops in (paths or {}).items()
                 if re.fullmatch(r"/users/\{[^}/]+\}", p) and isinstance(ops, dict) and "patch" in ops), None)
    if path is None:
        return {"found": f"no PATCH operation for {PATCH_PATH} in /openapi.json", "fields": {}}
    operation = paths[path]["patch"]
    content = (operation.get("requestBody") or {}).get("content") or {}
    media = next((m for m in content if m == "application/json" or m.endswith("+json")), None)
    if media is None:
        return {"found": f"PATCH {path} declares no JSON body (content: {sorted(content)})", "fields": {}}
    body = _resolve(content[media].get("schema", {}), doc)
    props = body.get("properties") or {} if isinstance(body, dict) else {}
    required = set(body.get("required") or []) if isinstance(body, dict) else set()
    return {"found": f"PATCH {path}, {media} body", "fields": {
        f: {"listed": f in props, "required": f in required, "nullable": allows_null(props.get(f, {}), doc),
            "schema": props.get(f)} for f in FIELDS}}


async def exercise_app(d: Driver, module, twin, db: Path, gate) -> None:
    from course.partial import column_writes, read_user

    async def call(svc, method: str, user_id: int | str, body: Any = NOT_SENT, *, raw: bytes | None = None,
                   if_match: str | None = None) -> dict:
        """One request, with the row before and after and the columns its UPDATEs wrote."""
        row_id = int(user_id) if str(user_id).isdigit() and int(user_id) < 2**63 else None
        before = read_user(db, row_id) if row_id else None
        column_writes(db)  # clear the audit
        headers = {"If-Match": if_match} if if_match is not None else None
        kwargs: dict[str, Any] = {"headers": headers}
        if raw is not None:
            kwargs.update(content=raw, headers={**(headers or {}), "content-type": "application/json"})
        elif body is not NOT_SENT:
            kwargs["json"] = body
        result = await svc.send(method, f"/users/{user_id}", **kwargs)
        sent = raw.decode() if raw is not None else (None if body is NOT_SENT else body)
        return {**result, "sent": sent, "before": before, "after": read_user(db, row_id) if row_id else None,
                "writes": [column for _, column in column_writes(db)]}

    def tag(result: dict) -> str | None:
        return (result.get("headers") or {}).get("etag")

    with d.serve(module.app) as svc, d.serve(twin.app, label="the second worker") as svc2:
        loops = [svc.server.thread.ident, svc2.server.thread.ident]
        with d.stage("requests", limit=30, doing="answering the checks' requests"):
            d.report["get"] = await call(svc, "GET", 1)
            spec = await svc.send("GET", "/openapi.json")
            d.report["schema"] = (patch_body_schema(spec["json"]) if spec["status"] == 200 else
                                  {"found": f"GET /openapi.json answered {spec['status']}", "fields": {}})
            d.report["one_field"] = await call(svc, "PATCH", 1, {"city": "Lyon"})
            d.report["two_fields"] = await call(svc, "PATCH", 1, {"name": "Ada King", "phone": "+44 20 7946 0999"})
            d.report["clear_phone"] = await call(svc, "PATCH", 2, {"phone": None})
            d.report["null_required"] = [await call(svc, "PATCH", 3, {"email": None}),
                                         await call(svc, "PATCH", 3, {"name": None, "city": "Paris"})]
            d.report["empty"] = await call(svc, "PATCH", 4, {})
            d.report["missing"] = await call(svc, "PATCH", 999, {"city": "Lyon"})
            d.report["wrong_types"] = [await call(svc, "PATCH", 5, body) for body in
                                       ({"city": 42}, {"name": ["Ada"]}, {"phone": {"number": "1"}},
                                        {"city": float("nan")}, {"name": float("inf")})]
            d.report["unknown_field"] = await call(svc, "PATCH", 5, {"nmae": "Barbara"})
            d.report["not_objects"] = [await call(svc, "PATCH", 5, raw=raw) for raw in NOT_OBJECTS]
            d.report["ids"] = [await call(svc, method, i, *(() if method == "GET" else ({"city": "Lyon"},)))
                               for i in BAD_IDS for method in ("GET", "PATCH")]
            # Two clients change different fields of one user at the same moment, without If-Match,
            # one through each worker; both read before either writes.
            bodies = ({"city": "Oslo"}, {"phone": "+47 2200 0000"})
            together = await gate.burst(db, [s.send("PATCH", "/users/6", json=b) for s, b in zip((svc, svc2), bodies)],
                                        loop_threads=loops)
            d.report["together"] = {"answers": [{**a, "sent": b} for a, b in zip(together.pop("answers"), bodies)],
                                    "row": read_user(db, 6), "gate": together}
            d.report["after_refusal"] = [await call(svc, "PATCH", 6, {"name": None}),
                                         await call(svc, "PATCH", 6, {"name": "Don Knuth"})]
            # A client PATCHes from the copy it read; then from a copy another client has changed since.
            etags: dict[str, Any] = {"read": await call(svc, "GET", 7)}
            etags["fresh"] = await call(svc, "PATCH", 7, {"city": "Boston"}, if_match=tag(etags["read"]) or '"?"')
            etags["reread"] = await call(svc, "GET", 7)
            etags["stale"] = await call(svc, "PATCH", 7, {"city": "Houston"}, if_match=tag(etags["read"]) or '"?"')
            etags["stale_empty"] = await call(svc, "PATCH", 7, {}, if_match=tag(etags["read"]) or '"?"')
            etags["other"] = await call(svc, "PATCH", 7, {"phone": "+1 617 555 0199"})
            etags["stale_after_other"] = await call(svc, "PATCH", 7, {"name": "Margaret H."},
                                                    if_match=tag(etags["fresh"]) or '"?"')
            d.report["etags"] = etags
            # Six clients read user 8 and send their change at the same moment, each with that ETag,
            # three through each worker; all six read before any writes.
            race: dict[str, Any] = {"read": await call(svc, "GET", 8)}
            seen = tag(race["read"]) or '"?"'
            column_writes(db)
            cities = [{"city": f"City {i}"} for i in range(6)]
            sends = [(svc, svc2)[i % 2].send("PATCH", "/users/8", json=b, headers={"If-Match": seen})
                     for i, b in enumerate(cities)]
            burst = await gate.burst(db, sends, loop_threads=loops)
            race["answers"] = [{**a, "sent": b} for a, b in zip(burst.pop("answers"), cities)]
            race["gate"] = burst
            race["row"] = read_user(db, 8)
            race["writes"] = [column for _, column in column_writes(db)]
            race["reread"] = await call(svc, "GET", 8)
            race["next"] = await call(svc, "PATCH", 8, {"phone": "+1 908 555 0100"},
                                      if_match=tag(race["reread"]) or '"?"')
            d.report["race"] = race


def main(d: Driver) -> None:
    import os

    from course.partial import create_users

    from course.grading.writegate import WriteGate

    db = d.scratch / "users.db"
    os.environ["DATABASE_URL"] = create_users(db)
    gate = WriteGate()
    gate.install()
    module = d.import_stage("app.py")
    # A second worker, as `uvicorn --workers 2` starts one: app.py imported again, its own app, engine
    # and module state (a lock in Python holds in one worker only).
    twin = d.import_stage("app.py", module_name="app_second_worker")
    asyncio.run(exercise_app(d, module, twin, db, gate))


if __name__ == "__main__":
    Driver.main(main)
