"""The photo service's API with a real task queue: POST /photos/{photo_id} writes the photo's row
and sends process_photo, then answers 202 at once; GET /tasks/{task_id} is the status the client
polls.

    BROKER_URL=... RESULT_BACKEND=... PHOTOS_DB=... JOURNAL_DB=... \
        uvicorn --factory photos_api:create_app

Two writes to two systems, the database and the broker (section 7). `publish` says where the task
is sent: "after_commit" (section 3) or "in_transaction", before the commit.
"""

import sqlite3
import time
import uuid
from typing import Annotated

from celery.result import AsyncResult
from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import photos

PhotoId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,40}$")]


class Upload(BaseModel):
    owner: str = Field(pattern=r"^[a-z]{1,20}$")


def add_status_route(app: FastAPI, celery_app) -> None:
    @app.get("/tasks/{task_id}")
    def task_status(task_id: uuid.UUID) -> dict:
        result = AsyncResult(str(task_id), app=celery_app)
        body = {"task_id": str(task_id), "state": result.state}  # PENDING, STARTED, RETRY, ...
        if result.state == "SUCCESS":
            body["result"] = result.result
        elif result.state in ("FAILURE", "RETRY"):
            body["error"] = f"{type(result.result).__name__}: {result.result}"
        return body


def create_app(tasks=None, *, publish: str = "after_commit", quota_seconds: float = 0.0) -> FastAPI:
    """The API for the Celery app in `tasks` (default: tasks.py next to this file). After the
    photo's row, the transaction updates the owner's quota, which takes `quota_seconds`."""
    if tasks is None:
        import tasks
    app = FastAPI(title="Photos")

    @app.exception_handler(RequestValidationError)  # a 422 that never echoes NaN (module 05)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.post("/photos/{photo_id}", status_code=202)
    def upload(photo_id: PhotoId, body: Upload, request: Request) -> dict:
        try:
            with photos.transaction() as db:
                photos.insert(db, photo_id, body.owner)
                if publish == "in_transaction":
                    task = tasks.process_photo.delay(photo_id)  # before the commit
                time.sleep(quota_seconds)  # the rest of the transaction: quota, audit row
        except sqlite3.IntegrityError:
            raise HTTPException(409, f"photo {photo_id} exists already") from None
        if publish == "after_commit":
            task = tasks.process_photo.delay(photo_id)  # after the commit
        status_url = str(request.url_for("task_status", task_id=task.id))
        return {"task_id": task.id, "status_url": status_url}

    add_status_route(app, tasks.app)
    return app
