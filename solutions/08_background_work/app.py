"""The shop's checkout API. The order is saved in the shop's database; the slow work (charge,
invoice) runs in a Celery worker; the client gets 202 and a task id at once, and polls
GET /tasks/{task_id} for the outcome."""

import uuid
from contextlib import asynccontextmanager
from typing import Annotated

from celery.result import AsyncResult
from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from pydantic import BaseModel, Field

import shop
from tasks import celery_app, checkout


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    # The broker connections .delay() opened are closed at shutdown, not left to the process's exit.
    celery_app.pool.force_close_all()


app = FastAPI(title="Shop", lifespan=lifespan)


# Bad input is a 422, never a 500. FastAPI's default 422 echoes every rejected value, and a value
# JSON cannot carry (NaN, Infinity, a lone surrogate) turns that answer into a 500. Answer with each
# error's location, message and type only (module 05, section 5: a generated batch of bad requests).
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


OrderId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,40}$")]


class Checkout(BaseModel):
    amount_cents: int = Field(gt=0, le=1_000_000)
    card: str = Field(pattern=r"^[0-9]{12,19}$")


# TODO 6: save the order, start the work in the worker and answer at once: 202 with the task's id.
@app.post("/orders/{order_id}/checkout", status_code=202)
def start_checkout(order_id: OrderId, body: Checkout, request: Request) -> dict:
    with shop.transaction() as db:
        shop.save_order(db, order_id, body.amount_cents, body.card)
    try:  # after the commit: the worker finds the order
        task = checkout.delay(order_id)
    except OperationalError:  # the broker cannot be reached: the order is saved, the client tries again
        raise HTTPException(503, "checkout is unavailable for a moment; try again", headers={"Retry-After": "5"})
    return {"task_id": task.id, "status_url": str(request.url_for("task_status", task_id=task.id))}


# TODO 7: the status the client polls.
@app.get("/tasks/{task_id}")
def task_status(task_id: uuid.UUID) -> dict:
    result = AsyncResult(str(task_id), app=celery_app)
    body = {"task_id": str(task_id), "state": result.state}
    if result.state == "FAILURE":
        body["error"] = f"{type(result.result).__name__}: {result.result}"
    elif result.state == "SUCCESS":
        body["result"] = result.result
    return body
