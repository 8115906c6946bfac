"""Runs a learner's module-03 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It creates a SQLite file with six users (name and email NOT NULL, city and phone nullable) and a
trigger per column that records every column an UPDATE names (course.partial), imports app.py,
serves it with uvicorn on 127.0.0.1, sends PATCH requests with partial bodies, explicit nulls,
wrong types and an unknown id, and reads each row back from the database before and after. It
never judges: the checks read the report.

Every request's result is the serving stage's answer record (course.grading.serving.Answer:
"request", "status", "body", "json", "seconds", "server_error") plus "sent" (the JSON body sent),
"before"/"after" (the row read straight from the database; None: no such row) and "writes" (the
columns the app's UPDATEs named during the request, in order).

Report keys (each check names the ones it needs with ``require``):

    get            GET /users/1
    one_field      PATCH /users/1 {"city": "Lyon"}
    two_fields     PATCH /users/1 {"name": "Ada King", "phone": "+44 20 7946 0999"} (after one_field)
    clear_phone    PATCH /users/2 {"phone": null}
    null_required  [PATCH /users/3 {"email": null}, PATCH /users/3 {"name": null, "city": "Paris"}]
    empty          PATCH /users/4 {}
    missing        PATCH /users/999 {"city": "Lyon"}
    wrong_types    PATCH /users/5 with {"city": 42}, {"name": ["Ada"]}, ["city"], {"phone": {"number": "1"}}
    together       [PATCH /users/6 {"city": "Oslo"}, PATCH /users/6 {"phone": "+47 2200 0000"}] sent at once,
                   plus "row": user 6 as stored afterwards
    after_refusal  [PATCH /users/6 {"name": null}, PATCH /users/6 {"name": "Don Knuth"}], one after the other
    stops          the serving stage's stop (SIGTERM): see course.grading.serving
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from course.grading.checking import Driver

NOT_SENT = object()


async def exercise_app(d: Driver, module, db: Path) -> None:
    from course.partial import column_writes, read_user

    async def call(svc, method: str, user_id: int, body=NOT_SENT) -> dict:
        """One request, with the row before and after and the columns its UPDATEs wrote."""
        before = read_user(db, user_id)
        column_writes(db)  # clear the audit
        result = await (svc.send(method, f"/users/{user_id}") if body is NOT_SENT else
                        svc.send(method, f"/users/{user_id}", json=body))
        return {**result, "sent": None if body is NOT_SENT else body, "before": before,
                "after": read_user(db, user_id), "writes": [column for _, column in column_writes(db)]}

    with d.serve(module.app) as svc:
        with d.stage("requests", limit=30, doing="answering the checks' requests"):
            d.report["get"] = await call(svc, "GET", 1)
            d.report["one_field"] = await call(svc, "PATCH", 1, {"city": "Lyon"})
            d.report["two_fields"] = await call(svc, "PATCH", 1, {"name": "Ada King", "phone": "+44 20 7946 0999"})
            d.report["clear_phone"] = await call(svc, "PATCH", 2, {"phone": None})
            d.report["null_required"] = [await call(svc, "PATCH", 3, {"email": None}),
                                         await call(svc, "PATCH", 3, {"name": None, "city": "Paris"})]
            d.report["empty"] = await call(svc, "PATCH", 4, {})
            d.report["missing"] = await call(svc, "PATCH", 999, {"city": "Lyon"})
            d.report["wrong_types"] = [await call(svc, "PATCH", 5, body) for body in
                                       ({"city": 42}, {"name": ["Ada"]}, ["city"], {"phone": {"number": "1"}})]
            # Two clients change different fields of one user at the same moment.
            bodies = ({"city": "Oslo"}, {"phone": "+47 2200 0000"})
            together = await svc.together(*(svc.send("PATCH", "/users/6", json=b) for b in bodies))
            d.report["together"] = {"answers": [{**a, "sent": b} for a, b in zip(together, bodies)],
                                    "row": read_user(db, 6)}
            d.report["after_refusal"] = [await call(svc, "PATCH", 6, {"name": None}),
                                         await call(svc, "PATCH", 6, {"name": "Don Knuth"})]


def main(d: Driver) -> None:
    import os

    from course.partial import create_users

    db = d.scratch / "users.db"
    os.environ["DATABASE_URL"] = create_users(db)
    module = d.import_stage("app.py")
    asyncio.run(exercise_app(d, module, db))


if __name__ == "__main__":
    Driver.main(main)
