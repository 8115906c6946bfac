"""The shop's API with a real task queue: POST starts a checkout task and answers 202 at once;
GET /tasks/{task_id} is the status the client polls.

    BROKER_URL=... RESULT_BACKEND=... SHOP_DB=... uvicorn --factory shop_api:create_app
"""

import uuid
from typing import Annotated

from celery.result import AsyncResult
from fastapi import FastAPI, Path, Request
from pydantic import BaseModel, Field

OrderId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,40}$")]


class Checkout(BaseModel):
    amount_cents: int = Field(gt=0, le=1_000_000)


def create_app(tasks=None) -> FastAPI:
    """The API for the Celery app in `tasks` (default: tasks.py next to this file)."""
    if tasks is None:
        import tasks
    app = FastAPI(title="Shop")

    @app.post("/orders/{order_id}/checkout", status_code=202)
    def start_checkout(order_id: OrderId, body: Checkout, request: Request) -> dict:
        task = tasks.checkout_idempotent.delay(order_id, body.amount_cents)  # a message on the broker
        return {"task_id": task.id, "status_url": str(request.url_for("task_status", task_id=task.id))}

    @app.get("/tasks/{task_id}")
    def task_status(task_id: uuid.UUID) -> dict:
        result = AsyncResult(str(task_id), app=tasks.app)
        body = {"task_id": str(task_id), "state": result.state}  # PENDING, STARTED, RETRY, SUCCESS, FAILURE
        if result.state == "SUCCESS":
            body["result"] = result.result
        elif result.state in ("FAILURE", "RETRY"):
            body["error"] = f"{type(result.result).__name__}: {result.result}"
        return body

    return app
