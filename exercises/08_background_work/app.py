"""The shop's checkout API. Today the slow work (charge, invoice) runs inside the request: the
client waits for all of it, and a crash of the server loses it."""

import uuid
from contextlib import asynccontextmanager
from typing import Annotated

from celery.result import AsyncResult
from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
@app.post("/orders/{order_id}/checkout")
def start_checkout(order_id: OrderId, body: Checkout, request: Request) -> dict:
    with shop.transaction() as db:
        shop.save_order(db, order_id, body.amount_cents, body.card)
    try:
        charge_id = shop.charge_card(order_id, body.amount_cents, body.card)
    except shop.CardDeclined as exc:
        raise HTTPException(status_code=402, detail=str(exc))
    except shop.GatewayTimeout as exc:
        raise HTTPException(status_code=503, detail=str(exc))
    shop.send_invoice(order_id)
    return {"order_id": order_id, "charge_id": charge_id}


# TODO 7: the status the client polls: GET /tasks/{task_id} -> {"task_id": ..., "state": ...}.
