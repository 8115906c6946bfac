"""Runs a learner's module-03 app for real and reports what happened, as JSON.

    python driver.py APP_DIR

It creates a SQLite file with six users (name and email NOT NULL, city and phone nullable) and a
trigger per column that records every column an UPDATE names (course.partial), imports app.py,
serves it with uvicorn on 127.0.0.1, sends PATCH requests with partial bodies, explicit nulls,
wrong types and an unknown id, and reads each row back from the database before and after. It
never judges: the checks read the report.

Every request's result is {"request", "status", "body", "json", "server_error", "before", "after",
"writes"}: status None when there was no answer; json the parsed body (None if not JSON);
server_error the exception the server logged with the app's line ("" if none); before/after the
row read straight from the database (None: no such row); writes the columns the app's UPDATEs
named during the request, in order.

Report keys (each check names the ones it needs with ``require``):

    get            GET /users/1
    one_field      PATCH /users/1 {"city": "Lyon"}
    two_fields     PATCH /users/1 {"name": "Ada King", "phone": "+44 20 7946 0999"} (after one_field)
    clear_phone    PATCH /users/2 {"phone": null}
    null_required  [PATCH /users/3 {"email": null}, PATCH /users/3 {"name": null, "city": "Paris"}]
    empty          PATCH /users/4 {}
    missing        PATCH /users/999 {"city": "Lyon"}
    wrong_types    PATCH /users/5 with {"city": 42}, {"name": ["Ada"]}, ["city"], {"phone": {"number": "1"}}
    stopped_cleanly  True once the server stopped
"""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path

from course.grading.checking import Driver

CLIENT_TIMEOUT = 8  # seconds a client waits for an answer
SETTLE = 0.02       # seconds after an answer: the server logs its exception, a late commit lands


async def exercise_app(d: Driver, module, db: Path) -> None:
    import httpx

    from course.partial import column_writes, read_user
    from course.server import serve_in_thread

    with d.stage("startup", limit=10, doing="starting the app (the lifespan, up to its yield)"):
        server_cm = serve_in_thread(module.app, timeout_graceful_shutdown=2, ready_timeout=8)
        server = server_cm.__enter__()
    try:
        with d.stage("requests", limit=30, doing="answering the checks' requests"):
            async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT,
                                         limits=httpx.Limits(max_keepalive_connections=0)) as client:

                async def call(method: str, user_id: int | str, body=None) -> dict:
                    """One request's result, with the row before and after; a failure is recorded, never
                    raised, so one broken request does not hide the others."""
                    path = f"/users/{user_id}"
                    shown = f"{method} {path}" + ("" if method == "GET" else f" {json.dumps(body)}")
                    before = read_user(db, user_id) if isinstance(user_id, int) else None
                    column_writes(db)  # clear the audit
                    errors_before = collections.Counter(server.errors)
                    result: dict = {"request": shown}
                    try:
                        r = await client.request(method, path, **({} if method == "GET" else {"json": body}))
                        result.update(status=r.status_code, body=r.text[:400])
                        try:
                            result["json"] = r.json()
                        except ValueError:
                            result["json"] = None
                    except httpx.HTTPError as exc:
                        result.update(status=None, body=f"no answer: {type(exc).__name__}: {exc}"[:300], json=None)
                    await asyncio.sleep(SETTLE)
                    result["server_error"] = server.describe_errors(errors_before)
                    result["before"] = before
                    result["after"] = read_user(db, user_id) if isinstance(user_id, int) else None
                    result["writes"] = [column for _, column in column_writes(db)]
                    return result

                d.report["get"] = await call("GET", 1)
                d.report["one_field"] = await call("PATCH", 1, {"city": "Lyon"})
                d.report["two_fields"] = await call("PATCH", 1, {"name": "Ada King", "phone": "+44 20 7946 0999"})
                d.report["clear_phone"] = await call("PATCH", 2, {"phone": None})
                d.report["null_required"] = [await call("PATCH", 3, {"email": None}),
                                             await call("PATCH", 3, {"name": None, "city": "Paris"})]
                d.report["empty"] = await call("PATCH", 4, {})
                d.report["missing"] = await call("PATCH", 999, {"city": "Lyon"})
                d.report["wrong_types"] = [await call("PATCH", 5, body) for body in
                                           ({"city": 42}, {"name": ["Ada"]}, ["city"], {"phone": {"number": "1"}})]
    finally:
        with d.stage("shutdown", limit=10, doing="stopping the app (the lifespan after its yield)"):
            server_cm.__exit__(None, None, None)
    d.report["stopped_cleanly"] = True


def main(d: Driver) -> None:
    import os

    from course.partial import create_users

    db = d.scratch / "users.db"
    os.environ["DATABASE_URL"] = create_users(db)
    with d.stage("import", limit=10, doing="importing app.py",
                 hint="run `python -c 'import app'` in your exercise folder and read the first error."):
        module = d.import_learner("app.py", needs="app")
    asyncio.run(exercise_app(d, module, db))


if __name__ == "__main__":
    Driver.main(main)
